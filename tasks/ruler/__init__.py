"""RULER (NVIDIA/RULER): the 13 synthetic tasks, generated offline from a tokenizer, and their scoring.

Public API: TASKS, generate(task, tokenizer, length, num_samples, seed, essay_dir=None, qa_file=None),
score(task, predictions, references) -> 0-100, aggregate(scores_by_length) -> avg / wavg_inc / wavg_dec /
effective_length. Task arguments are RULER's scripts/synthetic.yaml; templates, answer prefixes and tokens to
generate are its data/synthetic/constants.py, verbatim. Deviations are listed in common.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrecipe.base import downloads, model_dirs
from longrecipe.base.io import write_text
from longrecipe.base.schema import ScoreRow, read_jsonl
from longrecipe.base.tokenization import load_tokenizer, tokenizer_hash
from longrecipe.tasks import chat
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.ruler import common, cwe, fwe, qa, ruler_niah, vt
from longrecipe.tasks.views import Column, Plot, Table, View

TASK_VERSION = 1
ESSAY_HELP = ("folder of essays (*.txt) for essay haystacks, or paul_graham_essays for the copy `longrecipe data pull "
              "paul_graham_essays` caches (default: built-in Python text)")
ESSAYS = "paul_graham_essays"  # the essay source of longrecipe.base.downloads
QA_SOURCES = {"qa_1": ("qa_squad", "squad"), "qa_2": ("qa_hotpot", "hotpotqa")}  # task -> (option, source)
THRESHOLD = 85.6  # Llama-2-7B at 4k: RULER's bar for the effective length


def _niah(haystack: str, k: str, v: str, nk: int = 1, nv: int = 1, nq: int = 1) -> dict[str, Any]:
    return {"task": "niah", "args": {"type_haystack": haystack, "type_needle_k": k, "type_needle_v": v,
                                     "num_needle_k": nk, "num_needle_v": nv, "num_needle_q": nq}}


CONFIGS: dict[str, dict[str, Any]] = {
    "niah_single_1": _niah("noise", "words", "numbers"),
    "niah_single_2": _niah("essay", "words", "numbers"),
    "niah_single_3": _niah("essay", "words", "uuids"),
    "niah_multikey_1": _niah("essay", "words", "numbers", nk=4),
    "niah_multikey_2": _niah("needle", "words", "numbers"),
    "niah_multikey_3": _niah("needle", "uuids", "uuids"),
    "niah_multivalue": _niah("essay", "words", "numbers", nv=4),
    "niah_multiquery": _niah("essay", "words", "numbers", nq=4),
    "vt": {"task": "variable_tracking", "args": {"type_haystack": "noise", "num_chains": 1, "num_hops": 4}},
    "cwe": {"task": "common_words_extraction", "args": {"freq_cw": 30, "freq_ucw": 3, "num_cw": 10}},
    "fwe": {"task": "freq_words_extraction", "args": {"alpha": 2.0}},
    "qa_1": {"task": "qa", "args": {"dataset": "squad"}},
    "qa_2": {"task": "qa", "args": {"dataset": "hotpotqa"}},
}
TASKS: tuple[str, ...] = tuple(CONFIGS)
MODULES = {"niah": ruler_niah, "variable_tracking": vt, "common_words_extraction": cwe, "freq_words_extraction": fwe,
           "qa": qa}
TOKENS_TO_GENERATE = {name: MODULES[c["task"]].TOKENS_TO_GENERATE for name, c in CONFIGS.items()}
METRIC = {name: ("string_match_part" if c["task"] == "qa" else "string_match_all") for name, c in CONFIGS.items()}


def _tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, Path)):
        path = model_dirs.resolve(tokenizer) if str(tokenizer) in model_dirs.ALIASES else tokenizer
        return load_tokenizer(path)
    return tokenizer


def _file_hash(path: str | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def cache_key(task: str, tokenizer: Any, length: int, num_samples: int, seed: int, essay_dir: str | None,
              qa_file: str | None, chat_template: bool) -> str:
    parts = {"task": task, "version": TASK_VERSION, "tokenizer": tokenizer_hash(tokenizer), "length": length,
             "n": num_samples, "seed": seed, "chat": chat_template, "words": common.wonderwords_version()}
    if CONFIGS[task]["args"].get("type_haystack") == "essay":
        parts["essays"] = common.source_hash(essay_dir)
    if CONFIGS[task]["task"] == "qa":
        parts["qa"] = _file_hash(qa_file)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("LONGRECIPE_CACHE", Path.home() / ".cache" / "longrecipe")) / "ruler"


def generate(task: str, tokenizer: Any, length: int, num_samples: int, seed: int = 42,
             essay_dir: str | None = None, qa_file: str | None = None, *, chat_template: bool = False,
             cache_dir: str | Path | None = None) -> list[dict]:
    """Samples of one RULER task whose prompt (answer prefix included) + tokens to generate fit `length` tokens.

    Each dict: index, input (without the answer prefix), answer_prefix, outputs (references), length (prompt +
    tokens to generate), prompt_tokens, max_new_tokens, answer_position (token index of the first answer in
    the input, when it is in one place) and depth. Cached by (task, tokenizer, length, n, seed, sources) when
    `cache_dir` is given."""
    if task not in CONFIGS:
        raise ValueError(f"unknown RULER task {task!r}; choose from {', '.join(TASKS)}")
    if num_samples < 1 or length < 1:
        raise ValueError("length and num_samples must be >= 1")
    tok = _tokenizer(tokenizer)
    essay_dir = None if essay_dir is None else str(essay_dir)
    qa_file = None if qa_file is None else str(qa_file)
    path = None
    if cache_dir is not None:
        key = cache_key(task, tok, length, num_samples, seed, essay_dir, qa_file, chat_template)
        path = Path(cache_dir) / f"{task}-{length}-{key}.jsonl"
        if path.is_file():
            return read_jsonl(path)
    wrap = chat.wrapper(tok) if chat_template else (lambda s: s)
    cfg = CONFIGS[task]
    module = MODULES[cfg["task"]]
    kwargs = {"qa_file": qa_file} if cfg["task"] == "qa" else {}
    samples = module.generate(cfg["args"], tok, length, num_samples, seed, task, essay_dir, wrap, **kwargs)
    for s in samples:
        s["task"] = task
    if path is not None:
        write_text(path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    return samples


_CONTROL = re.compile(r"[\x00-\x1f]")


def postprocess(prediction: str) -> str:
    """RULER's postprocess_pred: strip, control characters to newlines, strip."""
    return _CONTROL.sub("\n", prediction.strip()).strip()


def string_match_all(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over samples of the fraction of references found (case-insensitive substring), x100, 2 decimals."""
    per = [sum(r.lower() in p.lower() for r in refs) / len(refs) for p, refs in zip(predictions, references)]
    return round(sum(per) / len(per) * 100, 2)


def string_match_part(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over samples of 1 if any reference is found (case-insensitive substring), x100, 2 decimals."""
    per = [max(float(r.lower() in p.lower()) for r in refs) for p, refs in zip(predictions, references)]
    return round(sum(per) / len(per) * 100, 2)


def score(task: str, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """The task's RULER metric (0-100) after RULER's prediction post-processing."""
    if task not in CONFIGS:
        raise ValueError(f"unknown RULER task {task!r}")
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    preds = [postprocess(p) for p in predictions]
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    fn = string_match_part if METRIC[task] == "string_match_part" else string_match_all
    return fn(preds, refs)


def aggregate(scores_by_length: Mapping[int, float | Mapping[str, float]]) -> dict[str, Any]:
    """RULER's summary over lengths. Values: the per-length score, or {task: score} (averaged over tasks).

    avg: mean over lengths; wavg_inc / wavg_dec: weights 1..n / n..1 over ascending lengths, normalised;
    effective_length: the longest length scoring > 85.6 (None if none does)."""
    if not scores_by_length:
        raise ValueError("no scores to aggregate")
    lengths = sorted(scores_by_length)
    per = {n: (sum(v.values()) / len(v) if isinstance(v, Mapping) else float(v))
           for n, v in ((n, scores_by_length[n]) for n in lengths)}
    vals = [per[n] for n in lengths]
    k = len(vals)
    inc = sum((i + 1) * v for i, v in enumerate(vals)) / (k * (k + 1) / 2)
    dec = sum((k - i) * v for i, v in enumerate(vals)) / (k * (k + 1) / 2)
    passing = [n for n in lengths if per[n] > THRESHOLD]
    return {"per_length": per, "avg": sum(vals) / k, "wavg_inc": inc, "wavg_dec": dec,
            "effective_length": max(passing) if passing else None}


# ---------------------------------------------------------------------------------------------------- the suite
NIAH_M = ("niah_multikey_1", "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery")
NIAH_ALL = ("niah_single_1", "niah_single_2", "niah_single_3", *NIAH_M)
SUMMARY_TASKS = ("average", "summary")


@dataclass(frozen=True)
class RulerOptions:
    tasks: tuple[str, ...] = option((), "comma list of RULER tasks (default: all whose sources are available)",
                                    additive=True)
    qa_squad: str | None = option(None, "SQuAD v2 JSON for RULER qa_1 (default: the copy `longrecipe data pull squad` "
                                  "caches, fetched by the run when online)", key="qa_squad", data=True)
    qa_hotpot: str | None = option(None, "HotpotQA JSON for RULER qa_2 (default: the copy `longrecipe data pull "
                                   "hotpotqa` caches, fetched by the run when online)", key="qa_hotpot", data=True)
    essay_dir: str | None = option(None, ESSAY_HELP, key="essay_dir", data=True, env="LONGRECIPE_ESSAYS_DIR")
    chat_template: bool = option(False, key="chat_template")

    def __post_init__(self) -> None:
        """The SQuAD / HotpotQA copy `longrecipe data pull` (or an online run) put in the cache stands in for an
        absent --qa-squad / --qa-hotpot, and `--essay-dir paul_graham_essays` names the cached essays: written into
        the options, so that the run's identity hashes the file the run reads, as it hashes a flag's file. (A
        stat per source: the config builds these options often; `Ruler.sources` checks the content.)"""
        for attr, name in QA_SOURCES.values():
            if getattr(self, attr) is None:
                object.__setattr__(self, attr, downloads.local(name))
        object.__setattr__(self, "essay_dir", downloads.named(self.essay_dir, ESSAYS))


class Ruler(TaskBase):
    """RULER's 13 tasks at each length: one (task, length) group per prediction file; per-length means and
    the summary over lengths (avg, weighted averages, effective length) are its derived rows."""

    name, version, Options = "ruler", TASK_VERSION, RulerOptions
    view = View(
        columns=(Column("NIAH(M)", tasks=NIAH_M), Column("RULER", tasks=("average",), with_length=True)),
        tables=(Table("ruler_by_length", "RULER by context length", tasks=("average",), summary_task="summary",
                      summary=(("avg", "Avg"), ("wavg_inc", "wAvg(inc)"), ("wavg_dec", "wAvg(dec)"),
                               ("effective_length", "Effective")), integer_columns=("Effective",)),
                Table("ruler_niah_by_length", "RULER's eight NIAH variants (mean) by context length", tasks=NIAH_ALL)),
        plots=(Plot("ruler_vs_length", "RULER score (mean over tasks)", tasks=("average",)),),
        gate_tasks=SUMMARY_TASKS, ungated_metrics=("effective_length",), summary_csv=True, lm_eval_names="task")

    def check(self, options: RulerOptions) -> None:
        bad = [t for t in options.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"unknown RULER task {bad[0]!r}; choose from {', '.join(TASKS)}")
        self.sources(options)  # here, before the runner takes the run's identity: it hashes what was fetched

    def sources(self, options: RulerOptions, log: Callable[[str], None] = print) -> dict[str, str | None]:
        """The QA file of each qa task to run (None: skipped) once the essays are checked. A flag's own file is
        used as given; otherwise the cached copy (verified against its manifest) or, online, one fetched now. Tasks
        named in --ruler-tasks need theirs (offline: one line naming the flag and `longrecipe data pull`); the
        default set ("all whose sources are available") skips what it cannot get, offline without a try."""
        if options.essay_dir is not None:
            downloads.use(ESSAYS, options.essay_dir, required=True, log=log)
        return {task: downloads.use(QA_SOURCES[task][1], getattr(options, QA_SOURCES[task][0]),
                                    required=bool(options.tasks), log=log)
                for task in options.tasks or TASKS if task in QA_SOURCES}

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: RulerOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        qa = self.sources(options, log)
        tasks = list(options.tasks or TASKS)
        missing = [t for t in tasks if t in qa and qa[t] is None]
        if missing and not options.tasks:
            names = [QA_SOURCES[t][1] for t in missing]
            failed = [w for w in map(downloads.unavailable, names) if w] if not downloads.offline_reason() else []
            log(f"note: RULER {', '.join(missing)} skipped: pass --qa-squad / --qa-hotpot (SQuAD v2 / HotpotQA JSON), "
                f"or run `longrecipe data pull {' '.join(names)}` where the network allows"
                + (f" ({failed[0]})" if failed else ""))
            tasks = [t for t in tasks if t not in missing]
        out: list[Sample] = []
        for task in tasks:
            try:
                made = generate(task, tokenizer, length, n, seed, options.essay_dir, qa.get(task),
                                chat_template=options.chat_template, cache_dir=default_cache_dir())
            except ValueError as err:
                if "cannot hold" not in str(err):
                    raise
                log(f"note: RULER {task} does not fit {length} tokens with this tokenizer; skipped")
                continue
            out += [Sample.from_dict(d, task, length) for d in made]
        return out

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        task = samples[0].task
        value = score(task, predictions, [s.references for s in samples])
        nulls = sum(not postprocess(t) for t in predictions)  # RULER's Nulls: empty predictions
        return [ScoreRow("ruler", task, METRIC[task], value, self.version, samples[0].context_length, None,
                         len(samples), nulls)]

    def summarize(self, rows: list[ScoreRow]) -> list[ScoreRow]:
        """Per-length means over the tasks and the summary over lengths (avg, wAvg, effective length)."""
        by_len: dict[int, dict[str, float]] = {}
        for r in rows:
            if r.suite == "ruler" and r.context_length is not None and not self.derived(r):
                by_len.setdefault(r.context_length, {})[r.task] = r.value
        if not by_len:
            return []
        agg = aggregate(by_len)
        out = [ScoreRow("ruler", "average", "mean_over_tasks", round(v, 2), 1, n, None, len(by_len[n]))
               for n, v in agg["per_length"].items()]
        for metric in ("avg", "wavg_inc", "wavg_dec"):
            out.append(ScoreRow("ruler", "summary", metric, round(agg[metric], 2), 1, None, None, len(by_len)))
        eff = agg["effective_length"]
        out.append(ScoreRow("ruler", "summary", "effective_length", float(eff or 0), 1, None, None, len(by_len)))
        return out

    def derived(self, row: ScoreRow) -> bool:
        return row.task in SUMMARY_TASKS


TASK = Ruler()
