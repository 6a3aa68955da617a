"""The embedded tiny base model: a byte-level BPE tokenizer and a small Llama trained here, on 2 CPU cores.

Why: the project has no model hub. A model that really retrieves at its native length (256 tokens) and really
fails beyond it makes every part of the pipeline (training, evaluation, reports) testable for real.
The training mix: natural text that ships with Python (language modelling) and synthetic retrieval documents
(passkeys, RULER-style key-value needles) whose loss is on the answer only, the recipe measured to learn
in-context retrieval fastest at this size.

The parts: `config` (the two stages' configs and the checks of stage-2 options, torch-free), `tokenizer`,
`surgery` (the stage-1 model and stage 2's function-preserving growth), `rows` (training rows and batches),
`train` (both stages, on train/'s schedule, optimizer step and checkpoints) and `evals` (progress checks through
the passkey and RULER suites). The prompt formats are tasks/kv_format.py's. The names below are imported from
their part when first used, so that `from longrecipe.recipes.tinybase import TinyBaseV2Config` imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PARTS = {
    "config": ("TinyBaseConfig", "TinyBaseV2Config", "RULER_MIX", "TRAIN_SEED_BASE", "MIN_BINDING_LENGTH",
               "ROW_KINDS", "parse_mix", "parse_rows"),
    "tokenizer": ("SPECIAL", "train_tokenizer"),
    "surgery": ("build_model", "grow", "widen", "deepen_heads"),
    "rows": ("DocSampler", "RulerRows", "pad_rows", "haystack_dirs", "batches"),
    "train": ("train_tiny_base", "train_tiny_base_v2", "train_step", "optimizer", "row_mean_loss"),
    "evals": ("passkey_accuracy", "ruler_accuracy", "induction_accuracy"),
    "longrecipe.tasks.kv_format": ("NOISE", "KV_NEEDLE", "KV_QUESTION", "KV_INTRO", "RULER_NEEDLE", "RULER_QUESTION"),
}
_WHERE = {name: part for part, names in _PARTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    part = _WHERE.get(name)
    if part is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(part if "." in part else f"{__name__}.{part}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
