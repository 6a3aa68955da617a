"""`longrecipe train --plan`: what a training config costs before anything is loaded (no GPU, no torch).

Why: a paper-scale run (Llama-3-8B, 24-38k tokens per row, 8 GPUs) that does not fit fails minutes into the job,
after the weights are loaded and sharded; the estimate says so in a second, from the model's config.json (or a
built-in shape when the weights are not on this machine), and `train` refuses a plan that does not fit before it
loads the model. The accounting (what each byte is, per process) is derived in docs/notes/training_memory.md and
checked against measured peaks of real runs (tests/test_plan.py, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrecipe.base import model_dirs
from longrecipe.train.config import RunConfig
from longrecipe.train.flops import training_flops

GIB = 2**30
# Shapes of well-known checkpoints (their config.json), for planning on a machine that does not hold the weights.
SHAPES: dict[str, dict[str, Any]] = {
    "meta-llama-3-8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                        "tie_word_embeddings": False},
    "llama-3.2-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                     "tie_word_embeddings": True},
    "llama-2-7b-hf": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                      "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128, "vocab_size": 32000,
                      "tie_word_embeddings": False},
}
SHAPES["meta-llama-3-8b-instruct"] = SHAPES["llama-3-8b"] = SHAPES["meta-llama-3-8b"]
SHAPES["llama-3.2-1b-instruct"] = SHAPES["llama-3.2-1b"]
CUDA_RESERVE = 1.0 * GIB  # CUDA context, cuBLAS/NCCL workspaces, allocator fragmentation: outside the estimate
CUDA_RESERVE_FRACTION = 0.05


class PlanError(ValueError):
    """A run that cannot be laid out at all (not a memory estimate): `train` reports it, whatever the shape source."""


@dataclass(frozen=True)
class Plan:
    """Per-process memory (bytes, by part) and the step's size; `fits` compares it with `capacity`."""

    shape_source: str
    world: int
    device: str
    micro: int
    accum: int
    tokens_per_step: int
    steps: int
    total_flops: float
    parts: dict[str, float] = field(default_factory=dict)
    capacity: float | None = None
    sequence_parallel: int = 1

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def needed(self) -> float:
        """The estimate plus what a GPU needs beyond allocated tensors (context, workspaces, fragmentation)."""
        if self.device != "cuda":
            return self.total
        return self.total * (1 + CUDA_RESERVE_FRACTION) + CUDA_RESERVE

    @property
    def fits(self) -> bool | None:
        return None if self.capacity is None else self.needed <= self.capacity

    def summary(self) -> str:
        """One line: what `train` prints when it refuses."""
        where = f"{self.world} x {self.device}"
        cap = f" of {self.capacity / GIB:.1f} GiB" if self.capacity else ""
        return (f"estimated {self.needed / GIB:.1f} GiB per process{cap} ({where}, {self.micro} row(s) x "
                f"{self.tokens_per_step // max(1, self.micro * self.accum * self.world)} tokens per forward; "
                + ", ".join(f"{k} {v / GIB:.2f}" for k, v in self.parts.items() if v) + " GiB)")

    def table(self) -> str:
        lines = [f"model shape: {self.shape_source}",
                 f"processes: {self.world} ({self.device}); rows per forward {self.micro}, accumulation {self.accum}"
                 + (f"; sequence parallel {self.sequence_parallel} (each process: 1/{self.sequence_parallel} of "
                    f"every row)" if self.sequence_parallel > 1 else ""),
                 f"tokens per step: {self.tokens_per_step:,}; steps: {self.steps}; "
                 f"training FLOPs: {self.total_flops:.3e}",
                 "memory per process (GiB):"]
        lines += [f"  {k:<22} {v / GIB:9.2f}" for k, v in self.parts.items()]
        lines.append(f"  {'total':<22} {self.total / GIB:9.2f}")
        if self.device == "cuda":
            lines.append(f"  {'+ CUDA reserve':<22} {(self.needed - self.total) / GIB:9.2f}  (context, workspaces, "
                         f"fragmentation: 1 GiB + 5 %)")
        if self.capacity is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"{verdict}: {self.needed / GIB:.2f} of {self.capacity / GIB:.2f} GiB")
        return "\n".join(lines)


def parse_size(text: str) -> float:
    """'80GiB', '80GB', '141 GiB', '512MiB' -> bytes (binary and decimal units; a bare number is GiB)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)B?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"unreadable memory size {text!r} (e.g. 80GiB, 141GB, 512MiB)")
    value, unit, binary = float(m.group(1)), m.group(2).upper(), bool(m.group(3)) or not m.group(2)
    power = "KMGT".index(unit) + 1 if unit else 3
    return value * (1024 if binary else 1000) ** power


def model_shape(path: str) -> tuple[dict[str, Any], str]:
    """The model's config.json when it is on this machine, else a built-in shape matched by the folder's name."""
    try:
        conf = model_dirs.resolve(path, download=False) / "config.json"  # a plan never downloads a model
    except (OSError, ValueError):
        conf = Path(path) / "config.json"
    if conf.is_file():
        return json.loads(conf.read_text()), str(conf)
    key = Path(str(path).rstrip("/")).name.lower()
    if key in SHAPES:
        return dict(SHAPES[key]), f"built-in shape of {Path(path).name} ({path} is not on this machine)"
    raise ValueError(f"cannot plan: {path}/config.json not found and {Path(path).name!r} is not a built-in shape "
                     f"({', '.join(sorted(SHAPES))})")


def batch_plan(t: Any, world: int) -> tuple[int, int]:
    """(rows per process per forward, forwards per optimizer step) for train.batch_size sequences per step over
    `world` processes; one line when they do not divide."""
    micro = t.micro_batch_size or t.batch_size // world
    if micro < 1 or t.batch_size % (micro * world):
        raise ValueError(f"train.batch_size {t.batch_size} is not a multiple of train.micro_batch_size "
                         f"{t.micro_batch_size or '(auto)'} x {world} processes")
    return micro, t.batch_size // (micro * world)


def sequence_problem(shape: dict[str, Any], t: Any, world: int) -> str | None:
    """Why `train.sequence_parallel` cannot split this model over `world` processes (None when it can): Ulysses
    gives each process whole attention and key/value heads, and every group the same number of processes."""
    n = t.sequence_parallel
    if n == 1:
        return None
    heads = int(shape["num_attention_heads"])
    kv = int(shape.get("num_key_value_heads") or heads)
    if world % n:
        return f"train.sequence_parallel={n} does not divide the {world} process(es) (torchrun --nproc_per_node)"
    if heads % n or kv % n:
        return (f"train.sequence_parallel={n} does not divide the model's {heads} attention heads and {kv} "
                f"key/value heads")
    return None


def checkpointed_layers(cfg: RunConfig, layers: int) -> list[bool]:
    """Which decoder layers recompute their activations in backward (the rule `apply_checkpointing` applies)."""
    mode = cfg.train.checkpointing
    if mode == "auto":
        mode = "full" if cfg.model.gradient_checkpointing else "none"
    return [mode == "full" or (mode == "selective" and i % cfg.train.checkpoint_every == 0) for i in range(layers)]


def auto_chunk(vocab_size: int, budget_bytes: int = 1 << 30) -> int:
    """Tokens per loss chunk so that one chunk's fp32 logits take about `budget_bytes` (train/loop.py's rule)."""
    return max(1024, budget_bytes // (4 * vocab_size))


def estimate(shape: dict[str, Any], cfg: RunConfig, world: int = 1, device: str = "cpu",
             capacity: float | None = None, shape_source: str = "") -> Plan:
    """Per-process memory of one training step of `cfg` on `world` processes of `device` ('cpu' or 'cuda')."""
    t = cfg.train
    if (problem := sequence_problem(shape, t, world)) is not None:
        raise PlanError(problem)
    replicas = world // t.sequence_parallel  # data-parallel groups; each process holds 1/N of every row
    micro, accum = batch_plan(t, replicas)
    h, inter, n = int(shape["hidden_size"]), int(shape["intermediate_size"]), int(shape["num_hidden_layers"])
    nh = int(shape["num_attention_heads"])
    nkv = int(shape.get("num_key_value_heads") or nh)
    hd = int(shape.get("head_dim") or h // nh)
    vocab = int(shape["vocab_size"])
    tied = bool(shape.get("tie_word_embeddings", False))
    p_layer = h * hd * (2 * nh + 2 * nkv) + 3 * h * inter + 2 * h
    p_root = vocab * h * (1 if tied else 2) + h
    p = n * p_layer + p_root
    bf16 = t.precision == "bf16" or (t.precision == "auto" and device == "cuda")
    fsdp = world > 1 and t.distributed == "fsdp2"
    ddp = world > 1 and not fsdp
    parts: dict[str, float] = {}
    share = world if fsdp else 1
    parts["weights (fp32)"] = 4 * p / share
    parts["gradients (fp32)"] = 4 * p / share
    parts["AdamW state (fp32)"] = 8 * p / share
    if t.async_save and t.save_every and device == "cpu":  # the host copy a background save writes from
        parts["async save copy"] = 12 * p / share
    g = 2 if bf16 else 4  # bytes of a gathered / autocast parameter
    if fsdp:
        parts["FSDP gathered params"] = g * (2 * p_layer + p_root)  # one layer + its prefetch, the root group
        parts["FSDP grad buffers"] = g * p_layer + 4 * p_layer + (4 * p if accum > 1 else 0)
    else:
        if bf16 and device == "cuda":
            parts["autocast weight copies"] = 2 * p
        if ddp:
            parts["DDP gradient buckets"] = 4 * p
    tokens = micro * t.train_length // t.sequence_parallel
    saved, recompute = _activation_bytes(cfg, h, inter, n, nh, nkv, hd, bf16, fsdp)
    parts["activations (saved)"] = tokens * saved
    # the step's peak is the larger of two moments: the loss chunk's backward (all activations still held) and
    # the recompute of one checkpointed layer (the loss chunk long freed)
    loss = _loss_bytes(t, vocab, tokens, bf16 and device == "cuda")
    parts["loss chunk" if loss >= tokens * recompute else "layer recompute"] = max(loss, tokens * recompute)
    if t.stage == "replay" and cfg.model.attn_implementation != "flash_attention_2":
        parts["packed-row masks"] = (2 if bf16 else 4) * micro * t.train_length**2 * 2.5  # built, then kept
    if t.eval.every:  # between steps (gradients freed): the weights, AdamW, and a prefill of the longest length
        persistent = sum(v for k, v in parts.items() if k in PERSISTENT)
        extra = persistent + _eval_bytes(cfg, n, h, inter, nkv, hd, bf16) - sum(parts.values())
        if extra > 0:
            parts["train.eval excess"] = extra  # its moment minus the step's
    flops = training_flops(shape, t.train_length, t.batch_size) * t.steps
    return Plan(shape_source, world, device, micro, accum, t.batch_size * t.train_length, t.steps, flops, parts,
                capacity, t.sequence_parallel)


def _activation_bytes(cfg: RunConfig, h: int, inter: int, n: int, nh: int, nkv: int, hd: int, bf16: bool,
                      fsdp: bool) -> tuple[float, float]:
    """(bytes saved for backward per token: all layers with checkpointing applied, plus the tensors around the
    layers (ids, RoPE tables, final norm); bytes per token of recomputing one checkpointed layer in backward)."""
    if not bf16:  # fp32 everywhere (CPU; CUDA with precision=fp32)
        full, act = 28 * h + 16 * inter + 4 * (nh + 2 * nkv) * hd + 4 * nh, 4
    elif fsdp:  # bf16 parameters: every saved tensor in bf16
        full, act = 18 * h + 8 * inter + 2 * (nh + 2 * nkv) * hd + 4 * nh, 2
    else:  # autocast over fp32 weights: norms and residuals in fp32, matmul outputs in bf16
        full, act = 24 * h + 8 * inter + 2 * (nh + 2 * nkv) * hd + 4 * nh, 2
    chosen = checkpointed_layers(cfg, n)
    saved = sum((act if bf16 else 4) * h if c else full for c in chosen) + 8 + 2 * hd * act + 12 * h
    recompute = full + 3 * inter * act if any(chosen) else 0
    return saved, recompute


# what stays allocated between steps (gradients are freed; DDP keeps its buckets)
PERSISTENT = ("weights (fp32)", "AdamW state (fp32)", "async save copy", "autocast weight copies",
              "DDP gradient buckets")


def _eval_bytes(cfg: RunConfig, n: int, h: int, inter: int, nkv: int, hd: int, bf16: bool) -> float:
    """train.eval's own memory: the KV cache of its longest prompt (batch `train.eval.options.batch_size`, default
    1) over every layer, and one layer's activations over that prompt at prefill (no gradients kept)."""
    ev = cfg.train.eval
    tokens = int(ev.options.get("batch_size", 1)) * max(ev.lengths or (cfg.train.target_length,))
    act = 2 if bf16 else 4
    return tokens * (2 * n * nkv * hd * act + (4 * h + 3 * inter) * act)


def _loss_bytes(t: Any, vocab: int, tokens: int, bf16_logits: bool) -> float:
    """One chunk of logits through log-softmax and its backward (fp32: logits, log-probs, their gradient)."""
    chunk = t.loss_chunk or auto_chunk(vocab)
    live = min(tokens, chunk)
    return vocab * live * (12 + (2 if bf16_logits else 0))


def device_capacity(device: str, local_processes: int = 1) -> float | None:
    """Memory one process may use: the GPU's total memory, or on CPU the host's available memory shared by the
    processes of this machine (None when unknown)."""
    if device == "cuda":
        import torch  # local: the planner itself never needs torch

        return float(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / max(1, local_processes)
    except OSError:
        return None
    return None


def plan_for(cfg: RunConfig, world: int = 1, device: str = "cpu", capacity: float | None = None) -> Plan:
    shape, source = model_shape(cfg.model.path)
    return estimate(shape, cfg, world, device, capacity, source)
