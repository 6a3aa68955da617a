"""Run under torchrun by test_distributed.py: one loss and its gradients computed by one process and by the
torchrun processes as one sequence-parallel group (train/ulysses.py), compared; rank 0 prints one JSON line."""

from __future__ import annotations

import copy
import json
import sys

import torch
import torch.distributed as dist
from transformers import AutoConfig, AutoModelForCausalLM

from longrecipe.base import model_dirs
from longrecipe.train import ulysses
from longrecipe.train.loop import IGNORE, loss_and_count


def model(kv_heads: int, checkpointing: bool) -> torch.nn.Module:
    path = model_dirs.resolve("tiny")
    conf = AutoConfig.from_pretrained(path)
    torch.manual_seed(0)
    if kv_heads == conf.num_key_value_heads:
        net = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    else:  # grouped-query attention: the same shape with fewer key/value heads, random weights
        conf.num_key_value_heads = kv_heads
        net = AutoModelForCausalLM.from_config(conf, dtype=torch.float32, attn_implementation="sdpa")
    if checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return net.train()


def batch(length: int, packed: bool) -> dict[str, torch.Tensor]:
    """Two rows with LongRecipe-like position gaps, a few ignored labels, and (packed) three documents per row."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 2048, (2, length), generator=g)
    jumps = torch.where(torch.rand(2, length, generator=g) < 0.05, torch.randint(2, 200, (2, length), generator=g), 1)
    jumps[:, 0] = 0
    labels = ids.clone()
    labels[:, : length // 8] = IGNORE
    out = {"input_ids": ids, "position_ids": jumps.cumsum(1), "labels": labels}
    if packed:
        out["doc_ids"] = (torch.arange(length) * 3 // length).expand(2, length).clone()
        out["doc_ids"][1] = (torch.arange(length) >= length // 3).long()
    return out


def grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in net.named_parameters()}


def compare(kv_heads: int, packed: bool, checkpointing: bool, length: int, sp: ulysses.SequenceParallel) -> dict:
    ref_model = model(kv_heads, checkpointing)
    sp_model = copy.deepcopy(ref_model)
    data = batch(length, packed)
    ref_sum, ref_count = loss_and_count(ref_model, data, chunk=100)  # chunked: the loss chunks are exercised
    (ref_sum / ref_count).backward()
    ulysses.enable(sp_model)
    local_sum, local_count = loss_and_count(sp_model, data, chunk=100, sp=sp)
    total = torch.tensor([float(local_sum), float(local_count)], dtype=torch.float64)
    dist.all_reduce(total, group=sp.group)
    (local_sum / ref_count).backward()
    a, b = grads(ref_model), grads(sp_model)
    for v in b.values():
        dist.all_reduce(v, group=sp.group)  # what DDP/FSDP's reduction does (they average; the test sums)
    rel = max(float((b[k] - a[k]).norm() / a[k].norm().clamp_min(1e-30)) for k in a)
    return {"kv_heads": kv_heads, "packed": packed, "checkpointing": checkpointing,
            "loss_one": float(ref_sum / ref_count), "loss_sp": float(total[0] / total[1]),
            "count_one": ref_count, "count_sp": int(total[1]), "grad_rel": rel}


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    sp = ulysses.groups(dist.get_world_size())
    cases = [(4, False, False), (4, True, False), (2, False, True), (2, True, True)]
    rows = [compare(kv, packed, ckpt, int(sys.argv[1]), sp) for kv, packed, ckpt in cases]
    if dist.get_rank() == 0:
        print(json.dumps(rows))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
