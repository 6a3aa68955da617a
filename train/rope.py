"""RoPE rescaling written as a complete transformers 5.x `rope_parameters` dict.

Why complete: in transformers 5.x assigning the legacy `rope_scaling` after loading wipes `rope_theta` and the
model then fails to build, so every method here returns the whole dict and raises `max_position_embeddings`.
"""

from __future__ import annotations

from typing import Any

METHODS = ("ntk-at-target", "yarn", "linear", "llama3", "none")


def ntk_theta(theta: float, original_length: int, target_length: int, factor: float, head_dim: int) -> float:
    """The paper's NTK-aware base for a target length:
    theta * (factor * target / original - (factor - 1)) ** (head_dim / (head_dim - 2))."""
    return float(theta * (factor * target_length / original_length - (factor - 1)) ** (head_dim / (head_dim - 2)))


def base_theta(config: Any) -> float:
    """rope_theta of a transformers config (5.x `rope_parameters`, or the legacy attribute)."""
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def rope_parameters(config: Any, method: str, target_length: int, factor: float = 1.0) -> dict[str, Any]:
    """The full rope_parameters dict for extending `config` (native = max_position_embeddings) to target_length.

    ntk-at-target: plain RoPE with theta from `ntk_theta` (`factor` is the paper's NTK factor; 1 gives the
    theta that is exactly NTK-aware at the target). linear/yarn/llama3: transformers' scaled RoPE with
    factor target/native. none: unchanged theta.
    """
    if method not in METHODS:
        raise ValueError(f"unknown rope.method {method!r}; choose one of {', '.join(METHODS)}")
    native = int(config.max_position_embeddings)
    theta = base_theta(config)
    scale = target_length / native
    if method == "none":
        return {"rope_type": "default", "rope_theta": theta}
    if method == "ntk-at-target":
        return {"rope_type": "default", "rope_theta": ntk_theta(theta, native, target_length, factor, head_dim(config))}
    params: dict[str, Any] = {"rope_type": method, "rope_theta": theta, "factor": scale}
    if method in ("yarn", "llama3"):
        params["original_max_position_embeddings"] = native
    if method == "llama3":
        params.update(low_freq_factor=1.0, high_freq_factor=4.0)
    return params


def apply(config: Any, method: str, target_length: int, factor: float = 1.0) -> Any:
    """Set `config.rope_parameters` and raise `max_position_embeddings` to the target (in place; returns config)."""
    config.rope_parameters = rope_parameters(config, method, target_length, factor)
    config.max_position_embeddings = max(int(config.max_position_embeddings), int(target_length))
    return config
