"""Sequence parallelism, DeepSpeed-Ulysses style: each of N processes holds 1/N of every row's tokens.

Why: a row of 128k tokens does not fit one GPU's activation memory, whatever the batch. Everything in a decoder
layer except attention is per token, so it runs on the local slice unchanged; attention needs every key. Ulysses
swaps the split around attention with two all-to-alls: before it, each process trades its slice of all heads for
all tokens of H/N heads; after it, back. The attention in between is an ordinary causal attention over the full
row on H/N heads, so any kernel works (here PyTorch SDPA, which is FlashAttention on CUDA) and the test runs on CPU
with gloo. Position ids are sliced with the tokens, so RoPE sees the row's true positions (LongRecipe/PoSE gaps
included), and the next-token targets are shifted on the full row before slicing, so the token at a slice's end
predicts the first token of the next slice: the summed loss over the N processes is the one-process loss exactly.

Requirements: N divides the attention heads, the key/value heads and the row length (checked by
plan.sequence_problem before anything is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from transformers import AttentionInterface

from longrecipe.train.loop import IGNORE, shifted_targets

NAME = "longrecipe_ulysses"  # the attention implementation a model runs under while sequence parallel


def _all_to_all(x: torch.Tensor, group: Any) -> torch.Tensor:
    x = x.contiguous()  # first: empty_like keeps a permuted input's strides, and the exchange writes linearly
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


class _AllToAll(torch.autograd.Function):
    """Chunk i of dim 0 goes to rank i, and rank i's chunk j comes back as chunk i; with equal splits the
    exchange is its own adjoint, so the backward is the same exchange of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return _all_to_all(x, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _all_to_all(grad, ctx.group), None


def heads_to_sequence(x: torch.Tensor, group: Any, n: int) -> torch.Tensor:
    """(B, H, L/N, d) on each process -> (B, H/N, L, d): this process's H/N heads over the whole row."""
    b, h, ls, d = x.shape
    x = x.reshape(b, n, h // n, ls, d).permute(1, 0, 2, 3, 4)  # head group j -> process j
    x = _AllToAll.apply(x, group)  # chunk i: process i's slice of the row, for this process's heads
    return x.permute(1, 2, 0, 3, 4).reshape(b, h // n, n * ls, d)


def sequence_to_heads(x: torch.Tensor, group: Any, n: int) -> torch.Tensor:
    """(B, H/N, L, d) -> (B, H, L/N, d): the inverse exchange."""
    b, hn, length, d = x.shape
    x = x.reshape(b, hn, n, length // n, d).permute(2, 0, 1, 3, 4)  # slice i of the row -> process i
    x = _AllToAll.apply(x, group)  # chunk j: head group j of this process's slice
    return x.permute(1, 0, 2, 3, 4).reshape(b, n * hn, length // n, d)


def block_causal(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean mask: query i sees key j when j <= i within the same packed document."""
    length = doc_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=doc_ids.device).tril()
    return (causal[None] & (doc_ids[:, :, None] == doc_ids[:, None, :]))[:, None]


def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: Any, dropout: float = 0.0, scaling: float | None = None, sp_group: Any = None,
              sp_doc_ids: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The attention function transformers calls (AttentionInterface): local slices in, local slices out.

    The mask is built here from the full row's document ids (None: one document, plain causal), never from the
    local slice, which alone cannot say what a query on another process may see."""
    n = dist.get_world_size(sp_group)
    q, k, v = (heads_to_sequence(t, sp_group, n) for t in (query, key, value))
    if q.shape[1] != k.shape[1]:  # grouped-query attention: head groups split alike, so kv head = q head // rep
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    mask = None if sp_doc_ids is None else block_causal(sp_doc_ids)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                                           is_causal=mask is None, scale=scaling)
    return sequence_to_heads(out, sp_group, n).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, attention)


@dataclass(frozen=True)
class SequenceParallel:
    """This process's place in its sequence-parallel group (ranks g*N .. g*N+N-1 share rows)."""

    group: Any
    size: int
    rank: int

    def local(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, Any], torch.Tensor]:
        """(forward keyword arguments, next-token targets) for this process's slice of the full rows."""
        ids, pos = batch["input_ids"], batch["position_ids"]
        part = ids.shape[1] // self.size
        cut = slice(self.rank * part, (self.rank + 1) * part)
        targets = torch.nn.functional.pad(shifted_targets(batch), (0, 1), value=IGNORE)  # the row's last: none
        docs = batch.get("doc_ids")
        one_doc = docs is None or bool((docs == docs[:, :1]).all())
        kwargs = {"input_ids": ids[:, cut], "position_ids": pos[:, cut], "sp_group": self.group,
                  "sp_doc_ids": None if one_doc else docs}
        return kwargs, targets[:, cut]


def groups(size: int) -> SequenceParallel | None:
    """Split the torchrun processes into consecutive groups of `size` (every process creates every group, as
    torch.distributed requires) and return this process's; None when size is 1."""
    if size == 1:
        return None
    world, rank = dist.get_world_size(), dist.get_rank()
    mine = None
    for first in range(0, world, size):
        group = dist.new_group(list(range(first, first + size)))
        if first <= rank < first + size:
            mine = SequenceParallel(group, size, rank - first)
    return mine


def enable(model: Any) -> str:
    """Run the model's attention through `attention`; returns the implementation to restore before saving."""
    before = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    return before
