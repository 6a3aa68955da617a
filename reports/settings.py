"""The run manifest across runs: which settings that move a score differ between runs put side by side.

Why: a table or a gate that compares a float32 run with a bfloat16 one, or runs with different chat templates,
tokenizers or token budgets, reports the setting as if it were the model (LongBench#95, RULER#80). Each results.json
written since the manifest existed records them (evaluate/runner.py `run_manifest`); files without one are not
compared.
"""

from __future__ import annotations

import json
from typing import Any

# settings whose change can move a score (served_model and the like are names, not settings)
SCORE_MOVING = ("backend", "backend_version", "dtype", "attn_implementation", "chat_template_sha256",
                "tokenizer_sha256", "truncation", "generation", "sampling", "seed", "thinking")
PER_TASK = ("truncation", "generation")  # compared per suite or task that both runs hold


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text[:12] if isinstance(value, str) and len(value) == 64 else text  # a digest: its first 12 characters


def differences(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """One line per score-moving setting in which two or more runs (by name) with a manifest differ."""
    have = {name: m for name, m in manifests.items() if m}
    lines = []
    for key in SCORE_MOVING:
        if key in PER_TASK:
            parts = sorted({p for m in have.values() for p in (m.get(key) or {})})
            items = [(f"{key}[{p}]", {n: (m.get(key) or {})[p] for n, m in have.items() if p in (m.get(key) or {})})
                     for p in parts]
        else:
            items = [(key, {n: m.get(key) for n, m in have.items()})]
        for label, values in items:
            if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
                lines.append(f"setting {label} differs: " + ", ".join(f"{n}={_show(v)}" for n, v in values.items()))
    return lines
