"""Held-out perplexity at each context length: the model itself is scored (evaluate/perplexity.py), on the same
tokens at every length, so the lengths differ only in how much context each token has."""

from __future__ import annotations

from dataclasses import dataclass

from longrecipe.tasks.base import TaskBase, option
from longrecipe.tasks.views import Column, Plot, Table, View

TASK_VERSION = 1


@dataclass(frozen=True)
class PplOptions:
    file: str | None = option(None, 'JSONL of {"text"} rows for --suite ppl (default: held-out Python prose)',
                              data=True)


class Perplexity(TaskBase):
    name, version, Options, evaluator = "ppl", TASK_VERSION, PplOptions, "perplexity"
    view = View(columns=(Column("perplexity", with_length=True, longest=True),),
                tables=(Table("perplexity_by_length", "Held-out perplexity by context length (lower is better)",
                              lower=True),),
                plots=(Plot("ppl_vs_length", "held-out perplexity (log)", log_y=True),))


TASK = Perplexity()
