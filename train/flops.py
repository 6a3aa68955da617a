"""Training compute counted from the model's shape: what each method spends, comparable across sequence lengths.

Why counted and not measured: wall time on a shared CPU varies up to 2x between runs; FLOPs do not. The count is
the usual one (Kaplan et al.; PaLM's MFU appendix): a forward pass costs 2 FLOPs per parameter of every linear
layer (the LM head included, embeddings as lookups excluded) per token, plus attention's QK^T and PV products,
2 x 2 x T^2 x d_attn per layer, halved for the causal mask; a training step costs 3 forward passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def linear_params(config: Mapping[str, Any]) -> int:
    """Parameters of the linear layers of a Llama-shaped decoder (attention, SwiGLU MLP, LM head)."""
    h = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or h // heads)
    kv = int(config.get("num_key_value_heads") or heads)
    inter = int(config["intermediate_size"])
    per_layer = h * heads * head_dim * 2 + h * kv * head_dim * 2 + 3 * h * inter
    return int(config["num_hidden_layers"]) * per_layer + h * int(config["vocab_size"])


def forward_flops(config: Mapping[str, Any], seq_len: int) -> float:
    """FLOPs of one forward pass over one sequence of `seq_len` tokens (causal attention)."""
    heads = int(config["num_attention_heads"])
    d_attn = heads * int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    attention = 2 * 2 * int(config["num_hidden_layers"]) * seq_len**2 * d_attn / 2
    return 2.0 * linear_params(config) * seq_len + attention


def training_flops(config: Mapping[str, Any], seq_len: int, sequences: int) -> float:
    """FLOPs of training on `sequences` rows of `seq_len` tokens (forward + backward = 3 forwards)."""
    return 3.0 * sequences * forward_flops(config, seq_len)
