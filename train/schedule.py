"""The learning-rate schedule and the optimizer step every trainer here shares (the training recipe, recipe.py, and
the tiny base's own stages, longrecipe/recipes/tinybase/)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("cosine", "constant")


def warmup_cosine(warmup: int, steps: int, schedule: str = "cosine",
                  min_lr_ratio: float = 0.1) -> Callable[[int], float]:
    """The lr multiplier at step s: linear warmup over `warmup` steps, then a cosine from 1 down to `min_lr_ratio`
    at step `steps` (held there after), or a constant 1 (`schedule` "constant")."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} ({', '.join(SCHEDULES)})")

    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, warmup))
        if schedule == "constant":
            return warm
        progress = min(1.0, step / max(1, steps))
        return warm * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    return f


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched, max_grad_norm: float) -> torch.Tensor:
    """Once the gradients of a step are in: clip their norm at `max_grad_norm`, step the optimizer and the schedule,
    clear the gradients. Returns the norm before clipping (a DTensor under FSDP2)."""
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return gnorm
