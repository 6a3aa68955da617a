"""General ability through lm-eval (the model itself is scored: evaluate/lm_eval_bridge.py): our three local tasks by
default, or any lm-eval task names."""

from __future__ import annotations

from dataclasses import dataclass

from longrecipe.tasks.base import TaskBase, option
from longrecipe.tasks.views import Column, View

LOCAL_TASKS = ("longrecipe_cloze", "longrecipe_passkey_short", "longrecipe_heldout")


@dataclass(frozen=True)
class GeneralOptions:
    tasks: tuple[str, ...] = option(LOCAL_TASKS, "lm-eval task names for --suite general", additive=True)
    max_length: int | None = option(None, "lm-eval's window for the general suite (default: the model's "
                                    "max_position_embeddings)", ge=1)
    limit: int | None = option(None, "lm-eval's limit: the first N documents of each general task", ge=1)
    allow_code_execution: bool = option(False, "allow tasks that run generated code", key="allow_code_execution",
                                        neutral=True)


class General(TaskBase):
    name, version, Options, evaluator = "general", 1, GeneralOptions, "lm_eval"
    view = View(columns=(Column(per_task=True),), lm_eval_names="task")


TASK = General()
