"""Model surgery of the tiny base: the stage-1 model built from a config, and the function-preserving growth of
stage 2 (deeper: `grow`, wider: `widen`, wider heads: `deepen_heads`)."""

from __future__ import annotations

import copy
import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from longrecipe.recipes.tinybase.config import TinyBaseConfig


def build_model(tokenizer, cfg: TinyBaseConfig):
    """A Llama-shaped model from a transformers config (RoPE, RMSNorm, SwiGLU), tied embeddings."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.native_length,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")



def grow(model, num_layers: int, native_length: int):
    """A deeper copy of `model` that computes the same function: layer i of the new model copies old layer
    i * old // new, and every copy after the first of a layer has its output projections (o_proj, down_proj) zeroed,
    so it adds nothing to the residual stream until training moves it. Never shallower: dropping layers would change
    the function (a continuation of an 8-layer v2 needs --num-layers 8, not the default 4)."""
    old = model.config.num_hidden_layers
    if num_layers < old:
        raise ValueError(f"cannot grow a {old}-layer model to {num_layers} layers: give --num-layers {old} or more")
    conf = copy.deepcopy(model.config)
    conf.num_hidden_layers, conf.max_position_embeddings = num_layers, native_length
    new = LlamaForCausalLM._from_config(conf, attn_implementation="sdpa")
    new.model.embed_tokens.load_state_dict(model.model.embed_tokens.state_dict())
    new.model.norm.load_state_dict(model.model.norm.state_dict())
    seen = set()
    for i, layer in enumerate(new.model.layers):
        src = i * old // num_layers
        layer.load_state_dict(model.model.layers[src].state_dict())
        if src in seen:
            torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
            torch.nn.init.zeros_(layer.mlp.down_proj.weight)
        seen.add(src)
    new.tie_weights()
    return new


def widen(model, factor: int, noise: float = 1e-3, seed: int = 0):
    """A `factor`-times wider copy of `model` (hidden size, attention heads and MLP width; head dim and RoPE kept)
    that computes the same function up to `noise`: every hidden unit, head and MLP unit is repeated `factor` times,
    the weights reading a repeated input are divided by `factor`, RMSNorm is unchanged by repetition (the mean of
    squares is the same) and the final norm is divided by `factor` so the tied embedding gives the same logits.
    `noise` (relative to each weight's std) breaks the symmetry of the copies, which identical gradients would
    otherwise keep identical forever."""
    if factor == 1:
        return model
    conf = copy.deepcopy(model.config)
    hd = conf.head_dim
    conf.hidden_size *= factor
    conf.intermediate_size *= factor
    conf.num_attention_heads *= factor
    conf.num_key_value_heads *= factor
    conf.head_dim = hd
    new = LlamaForCausalLM._from_config(conf, attn_implementation="sdpa")
    gen = torch.Generator().manual_seed(seed)

    def rep(w: torch.Tensor, out: bool, inp: bool) -> torch.Tensor:
        if inp:
            w = torch.cat([w] * factor, dim=-1) / factor
        if out:
            w = torch.cat([w] * factor, dim=0)
        return w

    src = model.state_dict()
    sd = {}
    for name, w in src.items():
        if name.endswith("norm.weight"):
            sd[name] = torch.cat([w] * factor) / (factor if name == "model.norm.weight" else 1)
        elif name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            sd[name] = torch.cat([w] * factor, dim=1)
        else:  # every linear layer reads a repeated input and writes a repeated output
            sd[name] = rep(w, out=True, inp=True)
    for name, w in sd.items():
        if w.ndim == 2 and "embed" not in name and name != "lm_head.weight":
            w += noise * float(w.std()) * torch.randn(w.shape, generator=gen)
    new.load_state_dict(sd, strict=False)
    new.tie_weights()
    return new


def deepen_heads(model, head_dim: int, seed: int = 0, init: float = 0.02):
    """A copy of `model` whose attention heads are `head_dim` wide (a multiple m of the old width) and that computes
    the same function exactly. Why: key-conditioned retrieval compares keys in the slowly rotating RoPE pairs, and a
    32-wide head at theta 10k has only 5 pairs whose wavelength exceeds 2,000 tokens (64-wide: 12).
    How: the new head's RoPE pair i has frequency theta^(-2i/new), so old pair j (theta^(-2j/old)) is new pair
    m*j exactly; old q/k dims go there (q scaled by sqrt(m) for SDPA's 1/sqrt(head_dim)), the new pairs get random k
    and zero q (no score change, but q's gradient is not zero); the new value dims get random weights and zero o_proj
    columns (no output change, o_proj's gradient is not zero)."""
    conf = copy.deepcopy(model.config)
    old = conf.head_dim
    if head_dim == old:
        return model
    if head_dim % old:
        raise ValueError(f"head_dim {head_dim} is not a multiple of the model's {old}")
    m = head_dim // old
    conf.head_dim = head_dim
    new = LlamaForCausalLM._from_config(conf, attn_implementation="sdpa")
    gen = torch.Generator().manual_seed(seed)
    half, nhalf = old // 2, head_dim // 2
    rot = torch.tensor([m * j for j in range(half)] + [nhalf + m * j for j in range(half)])  # old dim -> new dim
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for name, w in model.state_dict().items():
        if not name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight")):
            continue
        if name.endswith("o_proj.weight"):  # (hidden, heads * old): columns per head, new value dims read as zero
            heads = w.shape[1] // old
            out = torch.zeros(w.shape[0], heads, head_dim)
            out[:, :, :old] = w.reshape(w.shape[0], heads, old)
            sd[name] = out.reshape(w.shape[0], heads * head_dim)
            continue
        heads = w.shape[0] // old
        rows = w.reshape(heads, old, w.shape[1])
        fresh = init * torch.randn(heads, head_dim, w.shape[1], generator=gen)
        if name.endswith("v_proj.weight"):
            fresh[:, :old] = rows
        else:
            if name.endswith("q_proj.weight"):
                fresh.zero_()
                rows = rows * math.sqrt(m)
            fresh[:, rot] = rows
        sd[name] = fresh.reshape(heads * head_dim, w.shape[1])
    new.load_state_dict(sd, strict=False)
    new.tie_weights()
    return new

