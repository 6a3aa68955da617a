"""HELMET's "Recall" category (princeton-nlp/HELMET, Yen et al. 2025): JSON KV and three RULER needle tasks as HELMET
prompts, generates and scores them, and their unweighted mean per length as the category score.

Reproduced from HELMET's definition (docs/notes/helmet_spec.md, section 2): Recall = the mean of `json_kv`
(substring exact match), `ruler_niah_mk_2`, `ruler_niah_mk_3` and `ruler_niah_mv` (`ruler_recall`: the share of
gold values found, case-insensitive, in the answer with the answer prefix put back in front), each 0-100
(`scripts/collect_results.py` `custom_avgs["Recall"]`). The needle tasks are RULER's niah_multikey_2 (word keys,
number values, a haystack of needles), niah_multikey_3 (uuids in needles) and niah_multivalue (four numbers under one
word key in the essays), built by our RULER generator with HELMET's prompt: RULER's question, then a newline and
"The special magic {type} for {query} mentioned in the provided text is/are" (RULER puts a space there), and
HELMET's generation lengths (50, 100, 50; JSON KV 100). With --chat-template the question is the user turn and no
prefix follows, as HELMET's chat path. Deliberate deviations, documented: HELMET ships files sized with the Llama-2
tokenizer; here every sample is fitted to the evaluated tokenizer (as tasks/json_kv.py); the MV prompt is current
HELMET's plural form (before its PR #15 MV was asked in the singular); the Recall row needs all four tasks at a
length (a subset has no category score).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from longrecipe.base import downloads
from longrecipe.base.schema import ScoreRow
from longrecipe.tasks import cache, chat, json_kv
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.ruler import CONFIGS, ESSAY_HELP, ESSAYS, common, ruler_niah
from longrecipe.tasks.views import Column, Plot, Table, View

TASK_VERSION = 1
# HELMET dataset name -> (RULER task, tokens to generate): configs/recall.yaml's generation_max_length
NEEDLES = {"ruler_niah_mk_2": ("niah_multikey_2", 50), "ruler_niah_mk_3": ("niah_multikey_3", 100),
           "ruler_niah_mv": ("niah_multivalue", 50)}
TASKS = ("json_kv", *NEEDLES)
PREFIX = "\n" + ruler_niah.ANSWER_PREFIX.lstrip()  # HELMET: user template + "\n" + system template


def needle_samples(name: str, tokenizer: Any, length: int, n: int, seed: int, essay_dir: str | None,
                   chat_template: bool) -> list[Sample]:
    """One of HELMET's RULER tasks: RULER's needles and haystack, HELMET's prefix and generation length."""
    task, tokens = NEEDLES[name]
    wrap = chat.wrapper(tokenizer) if chat_template else (lambda s: s)
    made = ruler_niah.generate(CONFIGS[task]["args"], tokenizer, length, n, seed, task, essay_dir, wrap,
                         answer_prefix="" if chat_template else PREFIX, tokens_to_generate=tokens)
    return [Sample.from_dict(d, name, length) for d in made]


def ruler_recall(prediction: str, answer_prefix: str, golds: list[str]) -> float:
    """HELMET's ruler_recall for one sample: the share of gold values inside prefix + answer (lower case)."""
    text = (answer_prefix.strip() + " " + prediction).lower() if answer_prefix else prediction.lower()
    return sum(g.lower() in text for g in golds) / len(golds)


@dataclass(frozen=True)
class HelmetOptions:
    tasks: tuple[str, ...] = option(TASKS, "comma list of HELMET Recall tasks", key="helmet_tasks", additive=True)
    essay_dir: str | None = option(None, ESSAY_HELP, key="essay_dir", data=True, env="LONGRECIPE_ESSAYS_DIR")
    chat_template: bool = option(False, key="chat_template")

    def __post_init__(self) -> None:
        object.__setattr__(self, "essay_dir", downloads.named(self.essay_dir, ESSAYS))


class HelmetRecall(TaskBase):
    """HELMET's Recall tasks at each length: one row per (task, length), and the category mean as "recall"."""

    name, version, Options = "helmet_recall", TASK_VERSION, HelmetOptions
    view = View(columns=(Column("HELMET Recall", tasks=("recall",), with_length=True),),
                tables=(Table("helmet_recall_by_length", "HELMET Recall (mean of its four tasks) by context length",
                              tasks=("recall",)),
                        Table("helmet_recall_tasks_by_length", "HELMET Recall tasks by context length",
                              tasks=TASKS)),
                plots=(Plot("helmet_recall_vs_length", "HELMET Recall", tasks=("recall",)),),
                gate_tasks=("recall",))

    def check(self, options: HelmetOptions) -> None:
        unknown = [t for t in options.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown HELMET Recall task {unknown[0]!r}; choose from {', '.join(TASKS)}")
        common.wonderwords_lists()  # the needles' words: one clear line when the package is missing
        if options.essay_dir is not None:
            downloads.use(ESSAYS, options.essay_dir, required=True)

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: HelmetOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        where = cache.path(self.name, self.version, tokenizer, length, n, seed, options,
                           {"essays": common.source_hash(options.essay_dir)} if "ruler_niah_mv" in options.tasks
                           else None)
        return cache.samples(where, lambda: [s for name in options.tasks
                                             for s in self.task_samples(name, tokenizer, length, n, seed, options)])

    def task_samples(self, name: str, tokenizer: Any, length: int, n: int, seed: int,
                     options: HelmetOptions) -> list[Sample]:
        if name == "json_kv":
            made = json_kv.generate(tokenizer, length, n, seed, 2, options.chat_template)
            return [Sample.from_dict(d, name, length) for d in made]
        return needle_samples(name, tokenizer, length, n, seed, options.essay_dir, options.chat_template)

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        task = samples[0].task
        if task == "json_kv":
            values = [json_kv.substring_exact_match(p, s.references[0]) for p, s in zip(predictions, samples)]
            metric = "substring_exact_match"
        else:
            values = [ruler_recall(p, s.answer_prefix, s.references) for p, s in zip(predictions, samples)]
            metric = "ruler_recall"
        nulls = sum(not p.strip() for p in predictions)
        return [ScoreRow(self.name, task, metric, 100 * sum(values) / len(values), self.version,
                         samples[0].context_length, None, len(values), nulls)]

    def summarize(self, rows: list[ScoreRow]) -> list[ScoreRow]:
        """HELMET's category score: per length, the unweighted mean of the four tasks (all four needed)."""
        by_length: dict[int | None, dict[str, ScoreRow]] = {}
        for r in rows:
            if r.suite == self.name and r.task in TASKS:
                by_length.setdefault(r.context_length, {})[r.task] = r
        return [ScoreRow(self.name, "recall", "mean_over_tasks", sum(r.value for r in rs.values()) / len(TASKS),
                         self.version, length, None, sum(r.n for r in rs.values()),
                         sum(r.n_null or 0 for r in rs.values()))
                for length, rs in sorted(by_length.items(), key=lambda kv: kv[0] or 0) if len(rs) == len(TASKS)]

    def derived(self, row: ScoreRow) -> bool:
        return row.task == "recall"


TASK = HelmetRecall()
