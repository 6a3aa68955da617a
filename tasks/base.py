"""The task contract: what every evaluation suite is, and the registry the runner, the CLI, `check` and the reports
iterate (none of them names a suite).

A suite = one file that defines a `Task`, plus one line in tasks/suites.py (or a `register(...)` call). A generation
task builds `Sample`s for a context length and scores the predictions of one (task, length) group; a model task
(perplexity, lm-eval) names the evaluator that scores the model itself. Its options dataclass declares its config
keys and CLI flags; its `view` (tasks/views.py) how the reports and the regression gate show it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from longrecipe.base.config import option  # noqa: F401  (suites declare their options with it)
from longrecipe.base.schema import ScoreRow
from longrecipe.tasks.views import View


@dataclass
class Sample:
    """One prompt and what a correct answer contains. `extra` travels into the prediction row (scorer inputs)."""

    index: int
    input: str
    references: list[str]
    answer_prefix: str = ""
    max_new_tokens: int = 32
    task: str = ""  # the sub-task (a RULER task, a LongBench dataset)
    context_length: int | None = None  # the length it was built for (None: the record's own, e.g. LongBench)
    length: int | None = None  # its tokens (prompt + generation), or the record's length field
    depth: float | None = None
    answer_position: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return self.input + self.answer_prefix

    @classmethod
    def from_dict(cls, d: dict, task: str, context_length: int | None) -> Sample:
        """A generator's dict (RULER, NIAH, passkey: `outputs` are the references) as a Sample."""
        return cls(int(d["index"]), d["input"], list(d["outputs"]), d.get("answer_prefix", ""),
                   int(d.get("max_new_tokens", 32)), task, context_length, d.get("length"), d.get("depth"),
                   d.get("answer_position"))


@dataclass(frozen=True)
class NoOptions:
    pass


class Task(Protocol):
    name: ClassVar[str]  # the suite name in results rows
    version: ClassVar[int]
    Options: ClassVar[type]
    per_length: ClassVar[bool]  # samples per requested context length (else once, at the model's window)
    evaluator: ClassVar[str | None]  # a model task: the evaluator that scores the model (None: generation)
    view: ClassVar[View]  # how the reports and the gate show it

    def check(self, options: Any) -> None: ...  # one-line errors before anything runs
    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: Any,
                log: Callable[[str], None] = print) -> list[Sample]: ...
    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]: ...
    def summarize(self, rows: list[ScoreRow]) -> list[ScoreRow]: ...  # rows derived from this suite's rows
    def derived(self, row: ScoreRow) -> bool: ...  # is it a summarize() row (recomputed, never carried over)?
    def follow_up(self, tokenizer: Any, length: int, options: Any, samples: list[Sample],
                  predictions: list[str]) -> list[Sample]: ...  # a second pass (chain of thought), or []


class TaskBase:
    """Defaults of the optional parts of the contract."""

    Options: ClassVar[type] = NoOptions
    per_length: ClassVar[bool] = True
    # how a prompt longer than its budget is fitted (recorded in the run manifest): "none" = built to its length
    truncation: ClassVar[str] = "none"
    evaluator: ClassVar[str | None] = None
    view: ClassVar[View] = View()

    def check(self, options: Any) -> None:
        return None

    def summarize(self, rows: list[ScoreRow]) -> list[ScoreRow]:
        return []

    def derived(self, row: ScoreRow) -> bool:
        return False

    def follow_up(self, tokenizer: Any, length: int, options: Any, samples: list[Sample],
                  predictions: list[str]) -> list[Sample]:
        return []


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a suite (its name must be new); returns it, so a module can write `TASK = register(MyTask())`."""
    if task.name in REGISTRY and type(REGISTRY[task.name]) is not type(task):
        raise ValueError(f"suite {task.name!r} is registered already")
    REGISTRY[task.name] = task
    return task


def option_fields(task: Task) -> list[tuple[str, dataclasses.Field]]:
    """(config key, field) of each option of a suite."""
    return [(f.metadata.get("key") or f"{task.name}_{f.name}", f) for f in dataclasses.fields(task.Options)]
