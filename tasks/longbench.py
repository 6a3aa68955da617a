"""LongBench v1 (21 datasets) and LongBench-E: prompts, truncation, metrics and averages as THUDM/LongBench.

Public API: DATASETS, build_prompt(dataset, record, tokenizer, max_length, chat_template=False),
score(dataset, prediction, answers, all_classes=None) -> 0-1 (one sample, after the first-line rule),
dataset_score(...) -> 0-100 (2 decimals), category_averages(scores) and the leaderboard average per language.
Metrics follow the reference metrics.py definitions (SQuAD normalisation, jieba for Chinese, `rouge`'s ROUGE-L F,
the classification substring rule, retrieval/count number matching, code_sim on the first non-comment line).
Deliberate deviation: middle truncation works on token ids (first half + last half of the ids) instead of the
reference's decode-and-re-encode, which can drift by a few tokens.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrecipe.base import downloads
from longrecipe.base.schema import ScoreRow, iter_jsonl
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.longbench_spec import MAX_NEW_TOKENS, PROMPTS
from longrecipe.tasks.views import Column, Table, View

__all__ = ["DATASETS", "DATASETS_E", "MAX_NEW_TOKENS", "PROMPTS", "build_prompt", "category_averages", "dataset_score",
           "load", "score"]

TASK_VERSION = 1
DATASETS: tuple[str, ...] = tuple(PROMPTS)
DATASETS_E: tuple[str, ...] = ("qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec",
                               "triviaqa", "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p")
NO_CHAT = ("trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p")  # chat template skipped (reference)
FIRST_LINE = ("trec", "triviaqa", "samsum", "lsht")  # only the first line of the prediction is scored
CATEGORIES = {
    "Single-Doc QA": {"en": ("narrativeqa", "qasper", "multifieldqa_en"), "zh": ("multifieldqa_zh",)},
    "Multi-Doc QA": {"en": ("hotpotqa", "2wikimqa", "musique"), "zh": ("dureader",)},
    "Summarization": {"en": ("gov_report", "qmsum", "multi_news"), "zh": ("vcsum",)},
    "Few-shot Learning": {"en": ("trec", "triviaqa", "samsum"), "zh": ("lsht",)},
    "Code Completion": {"en": ("lcc", "repobench-p"), "zh": ("lcc", "repobench-p")},  # shared by both languages
    "Synthetic Tasks": {"en": ("passage_count", "passage_retrieval_en"), "zh": ("passage_retrieval_zh",)},
}
BUCKETS = ((0, "0-4k"), (4000, "4-8k"), (8000, "8k+"))  # LongBench-E, by the record's `length` field


# ---- metrics -------------------------------------------------------------------------------------------------
def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_ZH_PUNCT = set(string.punctuation + "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～"
                "｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.")


def normalize_zh_answer(s: str) -> str:
    return "".join("".join(ch for ch in s.lower() if ch not in _ZH_PUNCT).split())


def _f1(pred: Sequence[str], truth: Sequence[str]) -> float:
    same = sum((Counter(pred) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, ground_truth: str, **_: Any) -> float:
    return _f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def _jieba(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(60)
    return list(jieba.cut(text, cut_all=False))


def qa_f1_zh_score(prediction: str, ground_truth: str, **_: Any) -> float:
    pred = [t for t in (normalize_zh_answer(x) for x in _jieba(prediction)) if t]
    truth = [t for t in (normalize_zh_answer(x) for x in _jieba(ground_truth)) if t]
    return _f1(pred, truth)


def rouge_score(prediction: str, ground_truth: str, **_: Any) -> float:
    """ROUGE-L F of the `rouge` package (as the reference; 0 where it raises, e.g. on empty text)."""
    from rouge import Rouge

    try:
        return float(Rouge().get_scores([prediction], [ground_truth], avg=True)["rouge-l"]["f"])
    except Exception:  # the reference treats every failure as 0
        return 0.0


def rouge_zh_score(prediction: str, ground_truth: str, **_: Any) -> float:
    return rouge_score(" ".join(_jieba(prediction)), " ".join(_jieba(ground_truth)))


def classification_score(prediction: str, ground_truth: str, **kwargs: Any) -> float:
    """1/k when the true class is among the k class names found in the prediction, after dropping found names
    that are substrings of the true class (with the reference's remove-while-iterating behaviour)."""
    found = [c for c in kwargs["all_classes"] if c in prediction]
    for term in found:  # removing during iteration skips the next element, exactly as the reference does
        if term in ground_truth and term != ground_truth:
            found.remove(term)
    return 1.0 / len(found) if ground_truth in found else 0.0


def _number_match(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return 0.0 if not numbers else sum(n == target for n in numbers) / len(numbers)


def retrieval_score(prediction: str, ground_truth: str, **_: Any) -> float:
    return _number_match(prediction, re.findall(r"Paragraph (\d+)", ground_truth)[0])


def retrieval_zh_score(prediction: str, ground_truth: str, **_: Any) -> float:
    return _number_match(prediction, re.findall(r"段落(\d+)", ground_truth)[0])


def count_score(prediction: str, ground_truth: str, **_: Any) -> float:
    return _number_match(prediction, str(ground_truth))


def code_sim_score(prediction: str, ground_truth: str, **_: Any) -> float:
    """fuzz.ratio of the first prediction line without ` # or // (after stripping leading newlines)."""
    from fuzzywuzzy import fuzz

    line = next((x for x in prediction.lstrip("\n").split("\n") if "`" not in x and "#" not in x and "//" not in x),
                "")
    return fuzz.ratio(line, ground_truth) / 100


METRICS = {
    "narrativeqa": qa_f1_score, "qasper": qa_f1_score, "multifieldqa_en": qa_f1_score,
    "multifieldqa_zh": qa_f1_zh_score, "hotpotqa": qa_f1_score, "2wikimqa": qa_f1_score, "musique": qa_f1_score,
    "dureader": rouge_zh_score, "gov_report": rouge_score, "qmsum": rouge_score, "multi_news": rouge_score,
    "vcsum": rouge_zh_score, "trec": classification_score, "triviaqa": qa_f1_score, "samsum": rouge_score,
    "lsht": classification_score, "passage_retrieval_en": retrieval_score, "passage_count": count_score,
    "passage_retrieval_zh": retrieval_zh_score, "lcc": code_sim_score, "repobench-p": code_sim_score,
}
METRIC_NAMES = {k: v.__name__.removesuffix("_score") for k, v in METRICS.items()}


def score(dataset: str, prediction: str, answers: Sequence[str], all_classes: Sequence[str] | None = None) -> float:
    """One sample, 0-1: the first-line rule where it applies, then the max over reference answers."""
    if dataset not in METRICS:
        raise ValueError(f"unknown LongBench dataset {dataset!r}")
    if dataset in FIRST_LINE:
        prediction = prediction.lstrip("\n").split("\n")[0]
    return max((METRICS[dataset](prediction, a, all_classes=all_classes) for a in answers), default=0.0)


def dataset_score(dataset: str, predictions: Sequence[str], answers: Sequence[Sequence[str]],
                  all_classes: Sequence[str] | None = None) -> float:
    """Mean over samples x100, rounded to 2 decimals (the reference's per-dataset number)."""
    values = [score(dataset, p, a, all_classes) for p, a in zip(predictions, answers)]
    return round(100 * sum(values) / len(values), 2)


def bucket(length: int) -> str:
    return [name for lo, name in BUCKETS if length >= lo][-1]


def category_averages(scores: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """{language: {category: mean of its datasets present, ..., 'Avg': mean of the categories}}."""
    out: dict[str, dict[str, float]] = {}
    for lang in ("en", "zh"):
        cats = {}
        for cat, by_lang in CATEGORIES.items():
            vals = [scores[d] for d in by_lang[lang] if d in scores]
            if vals:
                cats[cat] = sum(vals) / len(vals)
        if cats:
            cats["Avg"] = sum(cats.values()) / len(cats)
            out[lang] = cats
    return out


# ---- prompts and data ----------------------------------------------------------------------------------------
def middle_truncate(ids: Sequence[int], max_length: int) -> list[int]:
    """Keep the first and last max_length // 2 token ids (the reference's middle truncation, in ids)."""
    if len(ids) <= max_length:
        return list(ids)
    half = max_length // 2
    return list(ids[:half]) + list(ids[len(ids) - half :])


def build_prompt(dataset: str, record: Mapping[str, Any], tokenizer: Any, max_length: int,
                 chat_template: bool = False) -> str:
    """The dataset's prompt, middle-truncated to max_length tokens, then the chat template (except NO_CHAT)."""
    text = PROMPTS[dataset].format(**record)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > max_length:
        text = tokenizer.decode(middle_truncate(ids, max_length), skip_special_tokens=True)
    if chat_template and dataset not in NO_CHAT:
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return text


FIELDS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")


def load(path: str | Path) -> list[dict]:
    """Records in the original format; a missing file or a malformed line is a one-line error (file:line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LongBench data not found: {path} (one JSONL per dataset, original format)")
    return checked_records(path, ("input", "context", "answers", "length"))


def checked_records(path: Path, fields: Sequence[str]) -> list[dict]:
    """JSONL records that all carry `fields`; else a one-line error with the file and line."""
    out = []
    for i, rec in iter_jsonl(path):
        missing = [f for f in fields if f not in rec]
        if missing:
            raise ValueError(f"{path}:{i}: missing field {missing[0]!r}")
        out.append(rec)
    return out


# ---- the suites ------------------------------------------------------------------------------------------------
LB_CATEGORIES = ("Single-Doc QA", "Multi-Doc QA", "Summarization", "Few-shot Learning", "Code Completion",
                 "Synthetic Tasks")
NEEDS_DIR = ("the LongBench suites need --longbench-dir: a folder of JSONL files in LongBench's record format "
             "({dataset}.jsonl, {dataset}_e.jsonl, longbench_v2.jsonl), or the copy `longrecipe data pull longbench` "
             "caches")


def check_dir(options: LongBenchOptions) -> None:
    """--longbench-dir as given; without it the cached copy, verified, or (online) fetched now: before the runner
    takes the run's identity, which hashes the folder. Offline without one: one line (NEEDS_DIR and why)."""
    try:
        downloads.use("longbench", options.dir, required=True)
    except downloads.NotCached:
        raise ValueError(f"{NEEDS_DIR}; none is cached and downloads are off ({downloads.offline_reason()})") from None


@dataclass(frozen=True)
class LongBenchOptions:
    """Shared by longbench, longbench_e and longbench_v2 (one data folder)."""

    dir: str | None = option(None, "folder of LongBench JSONL files (original record format; default: the copy "
                             "`longrecipe data pull longbench` caches, fetched by the run when online)",
                             key="longbench_dir", data=True)
    datasets: tuple[str, ...] = option((), "comma list (default: every file present)", key="longbench_datasets",
                                       additive=True)
    max_length: int | None = option(None, "prompt tokens kept by middle truncation (default: window - tokens to "
                                    "generate)", key="longbench_max_length", ge=1)
    cot: bool = option(False, "LongBench v2 with the chain-of-thought pass", key="longbench_cot")
    chat_template: bool = option(False, key="chat_template")

    def __post_init__(self) -> None:
        """Without --longbench-dir, the copy in the cache (`longrecipe data pull longbench`, or an online run): in
        the options, so that the run's identity hashes that folder as it hashes a given one."""
        if self.dir is None:
            object.__setattr__(self, "dir", downloads.local("longbench"))


class LongBench(TaskBase):
    """LongBench v1: every dataset file present, prompts middle-truncated to the model's window minus the
    dataset's tokens to generate; category averages per language are its derived rows."""

    name, version, Options, per_length = "longbench", TASK_VERSION, LongBenchOptions, False
    truncation = "middle"  # the reference's: first and last halves of the token ids
    suffix = ""
    view = View(columns=(Column("LongBench", tasks=("average",), metrics=("avg_en",)),),
                tables=(Table("longbench_by_category", "LongBench by category and language", layout="by_language",
                              metrics=("avg_en", "avg_zh"), order=("Avg", *LB_CATEGORIES)),),
                gate_metrics=("avg_en", "avg_zh"))

    def check(self, options: LongBenchOptions) -> None:
        check_dir(options)

    def files(self, options: LongBenchOptions) -> list[tuple[str, Path]]:
        folder = Path(options.dir)
        names = options.datasets or (DATASETS if self.name == "longbench" else DATASETS_E)
        files = [(d, folder / f"{d}{self.suffix}.jsonl") for d in names]
        if options.datasets:
            return files  # named datasets must exist: load() gives the one-line error
        present = [(d, f) for d, f in files if f.is_file()]
        if not present:
            raise FileNotFoundError(f"no {self.name} files ({{dataset}}{self.suffix}.jsonl) in {folder}")
        return present

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: LongBenchOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        out = []
        for dataset, path in self.files(options):
            if dataset not in DATASETS:
                raise ValueError(f"unknown LongBench dataset {dataset!r}; choose from {', '.join(DATASETS)}")
            new = MAX_NEW_TOKENS[dataset]
            limit = options.max_length or max(16, length - new)
            out += [Sample(i, build_prompt(dataset, r, tokenizer, limit, options.chat_template), list(r["answers"]),
                           "", new, dataset, None, r["length"], extra={"all_classes": r.get("all_classes")})
                    for i, r in enumerate(load(path))]
        return out

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        task = samples[0].task
        value = dataset_score(task, predictions, [s.references for s in samples], samples[0].extra["all_classes"])
        return [ScoreRow(self.name, task, METRIC_NAMES[task], value, self.version, None, None, len(samples))]

    def summarize(self, rows: list[ScoreRow]) -> list[ScoreRow]:
        """Category averages per language and the leaderboard average (mean of categories, Code shared)."""
        scores = {r.task: r.value for r in rows if r.suite == self.name and r.task in DATASETS}
        out = []
        for lang, cats in category_averages(scores).items():
            for cat, value in cats.items():
                task = "average" if cat == "Avg" else cat
                out.append(ScoreRow(self.name, task, f"avg_{lang}", round(value, 2), 1, None, None, len(scores)))
        return out

    def derived(self, row: ScoreRow) -> bool:
        return row.metric.startswith("avg_")


class LongBenchE(LongBench):
    """LongBench-E: the same datasets in length buckets; context_length holds the bucket's lower bound (in the
    record's length units)."""

    name, suffix = "longbench_e", "_e"
    view = View(columns=(), tables=(Table("longbench_e_by_bucket", "LongBench-E by length bucket",
                                          column_names=tuple((lo, name) for lo, name in BUCKETS)),))

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        task, rows = samples[0].task, []
        for lo, name in BUCKETS:
            part = [(p, s) for p, s in zip(predictions, samples) if bucket(int(s.length)) == name]
            if part:
                value = dataset_score(task, [p for p, _ in part], [s.references for _, s in part],
                                      part[0][1].extra["all_classes"])
                rows.append(ScoreRow(self.name, task, METRIC_NAMES[task], value, self.version, lo, None, len(part)))
        return rows

    def summarize(self, rows: list[ScoreRow]) -> list[ScoreRow]:
        return []

    def derived(self, row: ScoreRow) -> bool:
        return False


TASK = LongBench()
TASK_E = LongBenchE()
