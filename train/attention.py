"""Attention inputs that keep full causal attention across position gaps.

Why: with sdpa/eager and no attention mask (training, gradient checkpointing), transformers 5.x reads every
position jump other than +1 as the start of a new packed document and cuts attention into blocks, so the
chunk after a LongRecipe/PoSE gap would silently not see the chunk before it. We therefore never let
transformers infer boundaries from position ids: a single document per row gets an explicit all-ones 2-D mask
(which sdpa turns into `is_causal=True`, keeping the flash kernel); packed documents get an explicit block-causal
4-D mask (sdpa, eager) or flash-attn varlen boundaries (cu_seqlens).
"""

from __future__ import annotations

from typing import Any

import torch


def is_flash(model: Any) -> bool:
    return str(getattr(model.config, "_attn_implementation", "")).startswith("flash")


def block_causal_mask(doc_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive (B, 1, L, L) mask: 0 where query i may see key j (j <= i, same document), dtype-min elsewhere.

    Additive float works for both eager (adds it) and sdpa (accepts float masks)."""
    length = doc_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=doc_ids.device).tril()
    keep = causal[None] & (doc_ids[:, :, None] == doc_ids[:, None, :])
    mask = torch.zeros(keep.shape, dtype=dtype, device=doc_ids.device)
    return mask.masked_fill(~keep, torch.finfo(dtype).min)[:, None]


def cu_seqlens(doc_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative document boundaries of the flattened batch (rows are also boundaries), int32 as flash-attn wants."""
    flat = doc_ids + torch.arange(doc_ids.shape[0], device=doc_ids.device)[:, None] * (int(doc_ids.max()) + 1)
    flat = flat.reshape(-1)
    starts = torch.nonzero(torch.diff(flat) != 0).flatten() + 1
    zero, end = torch.zeros(1, device=flat.device, dtype=starts.dtype), torch.tensor([flat.numel()], device=flat.device)
    return torch.cat([zero, starts, end]).to(torch.int32)


def model_inputs(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Keyword arguments for the base model's forward that fix the attention pattern explicitly."""
    ids, pos = batch["input_ids"], batch["position_ids"]
    docs = batch.get("doc_ids")
    if docs is None or bool((docs == docs[:, :1]).all()):
        return {"input_ids": ids, "position_ids": pos, "attention_mask": torch.ones_like(ids)}
    if is_flash(model):
        cu = cu_seqlens(docs)
        longest = int(cu.diff().max())
        return {"input_ids": ids.reshape(1, -1), "position_ids": pos.reshape(1, -1), "cu_seq_lens_q": cu,
                "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
    dtype = model.get_input_embeddings().weight.dtype
    if torch.is_autocast_enabled(ids.device.type):
        dtype = torch.get_autocast_dtype(ids.device.type)
    return {"input_ids": ids, "position_ids": pos, "attention_mask": block_causal_mask(docs, dtype)}
