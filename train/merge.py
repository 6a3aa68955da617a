"""`longrecipe merge`: a weighted average of the parameters of models of one architecture.

Why: the paper's last step merges the extended (and replayed) model with the original one, recovering general
ability while keeping the long context. The extended model's config (its RoPE and window) is kept: it comes
first on the command line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from longrecipe.base import model_dirs
from longrecipe.base.io import atomic_dir

ARCH_KEYS = ("architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "intermediate_size", "vocab_size")


def _state(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


def check_compatible(paths: Sequence[Path]) -> None:
    """Same architecture fields in every config, else a one-line ValueError naming the first difference."""
    confs = [json.loads((p / "config.json").read_text()) for p in paths]
    for key in ARCH_KEYS:
        values = [c.get(key) for c in confs]
        if any(v != values[0] for v in values):
            raise ValueError(f"incompatible models: {key} differs ({', '.join(map(str, values))})")


def merge_state(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * theta_i per tensor, in float32, cast back to the first model's dtype."""
    names = set(states[0])
    for i, s in enumerate(states[1:], 2):
        if set(s) != names:
            missing = sorted(names ^ set(s))[0]
            raise ValueError(f"incompatible models: model {i} differs in parameter {missing!r}")
    out = {}
    for name, ref in states[0].items():
        shapes = {tuple(s[name].shape) for s in states}
        if len(shapes) > 1:
            raise ValueError(f"incompatible models: {name} has shapes {sorted(shapes)}")
        acc = sum(w * s[name].float() for w, s in zip(weights, states))
        out[name] = acc.to(ref.dtype).contiguous()
    return out


def merge_models(paths: Sequence[str], weights: Sequence[float] | None, out: str | Path) -> Path:
    dirs = [model_dirs.resolve(p) for p in paths]
    if len(dirs) < 2:
        raise ValueError("merge needs at least two models")
    weights = list(weights) if weights else [1.0 / len(dirs)] * len(dirs)
    if len(weights) != len(dirs):
        raise ValueError(f"{len(weights)} weights for {len(dirs)} models")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite numbers, got {weights}")
    if abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"weights sum to {sum(weights)}, expected 1")
    check_compatible(dirs)
    merged = merge_state([_state(d) for d in dirs], weights)
    bad = next((k for k, v in merged.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise ValueError(f"the merged model has non-finite values in {bad!r} (non-finite inputs?); nothing written")
    with atomic_dir(out) as tmp:
        for f in dirs[0].iterdir():  # config, tokenizer and generation files of the first (extended) model
            if f.is_file() and f.suffix != ".safetensors" and not f.name.endswith(".index.json"):
                (tmp / f.name).write_bytes(f.read_bytes())
        save_file(merged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "merge.json").write_text(json.dumps({"models": [str(d) for d in dirs], "weights": weights}, indent=2))
    return Path(out)
