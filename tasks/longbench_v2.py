"""LongBench v2: four-choice questions answered by generation; the answer is parsed from "The correct answer is
(X)"; accuracy Overall / Easy / Hard / Short / Medium / Long, as THUDM/LongBench's pred.py and result.py.

Optional chain of thought: a first pass (TEMPLATE_COT, 1024 new tokens) then an answer pass (TEMPLATE_COT_ANSWER,
128 new tokens) that sees the reasoning. Middle truncation is in token ids, as the reference does for v2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from longrecipe.base.schema import ScoreRow
from longrecipe.tasks.base import Sample, TaskBase
from longrecipe.tasks.longbench import LongBenchOptions, check_dir, checked_records, middle_truncate
from longrecipe.tasks.longbench_v2_spec import TEMPLATE_0SHOT, TEMPLATE_COT, TEMPLATE_COT_ANSWER
from longrecipe.tasks.views import View

TASK_VERSION = 1
MAX_NEW_TOKENS = 128
COT_NEW_TOKENS = 1024
FIELDS = ("_id", "domain", "sub_domain", "difficulty", "length", "question", "choice_A", "choice_B", "choice_C",
          "choice_D", "answer", "context")


def fill(template: str, record: Mapping[str, Any], cot: str | None = None) -> str:
    text = (template.replace("$DOC$", record["context"].strip()).replace("$Q$", record["question"].strip())
            .replace("$C_A$", record["choice_A"].strip()).replace("$C_B$", record["choice_B"].strip())
            .replace("$C_C$", record["choice_C"].strip()).replace("$C_D$", record["choice_D"].strip()))
    return text.replace("$COT$", cot) if cot is not None else text


def build_prompt(record: Mapping[str, Any], tokenizer: Any, max_length: int, cot: bool = False,
                 reasoning: str | None = None) -> str:
    """The (first or answer-pass) prompt, middle-truncated to max_length token ids."""
    template = TEMPLATE_COT_ANSWER if reasoning is not None else (TEMPLATE_COT if cot else TEMPLATE_0SHOT)
    text = fill(template, record, reasoning)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > max_length:
        text = tokenizer.decode(middle_truncate(ids, max_length), skip_special_tokens=True)
    return text


def extract_answer(response: str) -> str | None:
    """'The correct answer is (X)', else 'The correct answer is X' (asterisks removed first); None if absent."""
    response = response.replace("*", "")
    match = re.search(r"The correct answer is \(([A-D])\)", response) or re.search(
        r"The correct answer is ([A-D])", response)
    return match.group(1) if match else None


def summary(records: Sequence[Mapping[str, Any]], predictions: Sequence[str | None]) -> dict[str, float]:
    """Accuracy (%, 1 decimal) overall and by difficulty (easy/hard) and length (short/medium/long)."""
    groups: dict[str, list[int]] = {k: [] for k in ("Overall", "Easy", "Hard", "Short", "Medium", "Long")}
    for rec, pred in zip(records, predictions):
        hit = int(pred == rec["answer"])
        groups["Overall"].append(hit)
        groups["Easy" if rec["difficulty"] == "easy" else "Hard"].append(hit)
        groups[{"short": "Short", "medium": "Medium"}.get(rec["length"], "Long")].append(hit)
    return {k: round(100 * sum(v) / len(v), 1) for k, v in groups.items() if v}


def load(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"LongBench v2 data not found: {path} (JSONL of the original records)")
    return checked_records(path, FIELDS)


class LongBenchV2(TaskBase):
    """One answer pass, or (--longbench-cot) a reasoning pass whose predictions feed the answer pass."""

    name, version, Options, per_length = "longbench_v2", TASK_VERSION, LongBenchOptions, False
    truncation = "middle"  # the reference's: first and last halves of the token ids
    view = View(columns=())

    def check(self, options: LongBenchOptions) -> None:
        check_dir(options)

    def _samples(self, tokenizer: Any, length: int, options: LongBenchOptions,
                 reasoning: Sequence[str] | None = None) -> list[Sample]:
        records = load(Path(options.dir) / "longbench_v2.jsonl")
        limit = options.max_length or max(16, length - (COT_NEW_TOKENS if options.cot else MAX_NEW_TOKENS))
        first = options.cot and reasoning is None
        return [Sample(i, build_prompt(r, tokenizer, limit, options.cot, None if reasoning is None else reasoning[i]),
                       [r["answer"]], "", COT_NEW_TOKENS if first else MAX_NEW_TOKENS, "cot" if first else "answer",
                       None, r["length"], extra={"difficulty": r["difficulty"]}) for i, r in enumerate(records)]

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: LongBenchOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        return self._samples(tokenizer, length, options)

    def follow_up(self, tokenizer: Any, length: int, options: LongBenchOptions, samples: list[Sample],
                  predictions: list[str]) -> list[Sample]:
        return self._samples(tokenizer, length, options, predictions) if samples[0].task == "cot" else []

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        if samples[0].task == "cot":
            return []
        records = [{"answer": s.references[0], "difficulty": s.extra["difficulty"], "length": s.length}
                   for s in samples]
        answers = [extract_answer(p) for p in predictions]
        nulls = sum(a is None for a in answers)
        return [ScoreRow(self.name, group, "accuracy", value, self.version, None, None, len(samples), nulls)
                for group, value in summary(records, answers).items()]


TASK = LongBenchV2()
