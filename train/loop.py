"""The training step: loss from hidden states in chunks, with attention fixed explicitly (see attention.py).

Why chunks: the full fp32 logits of a long sequence (32k tokens x 128k vocab = 16 GB) dwarf the model's
activations; computing the head and the cross-entropy chunk by chunk under activation checkpointing keeps only
one chunk of logits alive, forward and backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from longrecipe.train.attention import model_inputs
from longrecipe.train.plan import auto_chunk  # noqa: F401  (re-exported: the trainer's chunk rule)

IGNORE = -100


def _ce_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of one chunk: head matmul, fp32 upcast, log-softmax, gather."""
    logits = torch.nn.functional.linear(hidden, weight).float()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def shifted_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """targets[t] = labels[t+1]; the first token of a packed document is never predicted from the previous one."""
    targets = batch["labels"][:, 1:].clone()
    docs = batch.get("doc_ids")
    if docs is not None:
        targets[docs[:, 1:] != docs[:, :-1]] = IGNORE
    return targets


_COMPILED_CE: list = []


def compiled_ce() -> Any:
    """`_ce_sum` under torch.compile (fuses upcast, log-softmax and gather: fewer passes over the logits)."""
    if not _COMPILED_CE:
        _COMPILED_CE.append(torch.compile(_ce_sum))
    return _COMPILED_CE[0]


def chunked_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                     ce: Any = _ce_sum) -> torch.Tensor:
    """Sum of token cross-entropies over the flattened tokens, `chunk` tokens at a time.

    Several chunks are checkpointed (their logits are recomputed in backward instead of kept); when one chunk
    covers every token there is nothing to save and no recomputation is paid."""
    h, y = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    if chunk <= 0 or y.numel() <= chunk:
        return ce(h, weight, y)
    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, y.numel(), chunk):
        if torch.is_grad_enabled():
            total = total + checkpoint(ce, h[s : s + chunk], weight, y[s : s + chunk], use_reentrant=False)
        else:
            total = total + ce(h[s : s + chunk], weight, y[s : s + chunk])
    return total


def loss_and_count(model: Any, batch: dict[str, torch.Tensor], chunk: int = 4096,
                   ce: Any = _ce_sum, sp: Any = None) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of predicted tokens): sums let gradient accumulation and data parallel ranks
    weight every token equally, whatever the padding of each micro-batch. Under sequence parallelism (`sp`, see
    ulysses.py) `batch` holds the full rows and the sums are over this process's slice of them."""
    base = getattr(model, model.base_model_prefix)
    if sp is None:
        kwargs, targets = model_inputs(model, batch), shifted_targets(batch)
    else:
        kwargs, targets = sp.local(batch)
    rows, length = batch["input_ids"].shape[0], targets.shape[1]
    hidden = base(**kwargs, use_cache=False).last_hidden_state
    hidden = hidden.reshape(rows, -1, hidden.shape[-1])[:, :length]
    weight = model.get_output_embeddings().weight
    total = chunked_loss_sum(hidden, weight, targets, chunk, ce)
    return total, int((targets != IGNORE).sum())


def training_loss(model: Any, batch: dict[str, torch.Tensor], chunk: int = 4096, ce: Any = _ce_sum) -> torch.Tensor:
    """Mean next-token loss of `batch` (input_ids, position_ids, labels; optional doc_ids for packed rows)."""
    total, count = loss_and_count(model, batch, chunk, ce)
    return total / max(count, 1)
