"""Issue #20 item 7 on a lent GPU, in one call: the Llama-3.2-1B shape trained at 32k-128k tokens per sequence by
our step (full and selective checkpointing) and by Hugging Face `Trainer` (plain and with Liger kernels), compiled.

Prepare here (liger-kernel is pure Python + Triton; the device image has torch, triton and transformers):

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl liger-kernel==0.8.5

The call (device tool `run`, carry [".whl"], timeout_s 600; `--deadline 540` stops starting rows after 9 min, and
the JSON is rewritten after every row; 9 rows at ~1 min each (start-up, a compile, 4 steps) is an estimate, not a
measurement):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site;
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_train_1b.py --out $OUT

Sides (each (side, length) in its own process, so peak memory is its own; a side that runs out of memory or time
is a row saying so, never a missing row):
- `ours-full`: longrecipe's step (train/loop.py: chunked loss, fp32 weights + bf16 autocast, fused AdamW, clipping
  at 1.0), every decoder layer checkpointed, each layer compiled (`train.compile=true`);
- `ours-selective`: the same with every 2nd layer checkpointed (`train.checkpointing=selective`);
- `trainer`: `Trainer` with `bf16=True`, `gradient_checkpointing=True`, fused AdamW, each decoder layer compiled
  (as ours; `torch_compile=True` compiles the mask creation too, which builds a T x T mask and leaves flash);
- `trainer+liger`: the same with `use_liger_kernel=True` (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU).
All sides: one row per step of random tokens whose LongRecipe positions span 4x the row (an all-ones attention
mask, so SDPA's flash kernel runs), median of the steps after the first two. MFU in two conventions: model FLOPs
with causal attention halved (train/flops.py) and with the full T^2 square, each over the measured 790 TFLOP/s
and over the 989 TFLOP/s spec (recomputation of checkpointed layers never counted). On CPU, `--shape tiny
--device cpu --lengths 256 --sides ours-full,trainer` runs the same code end to end (no compile, no Liger).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()

SHAPES = {
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "tiny": dict(vocab_size=2048, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=4, head_dim=32, tie_word_embeddings=True),
}
SIDES = ("ours-full", "ours-selective", "trainer", "trainer+liger")
PEAKS = {"measured 790": 790e12, "spec 989": 989e12}


def build(shape: str, length: int, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=4 * length,
                      rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    return model.train()


def rows(length: int, vocab: int, steps: int, device: str) -> list[dict]:
    """`steps` rows of gpu_check.py's kind (random tokens in 8-64-token segments whose LongRecipe positions span 4x
    `length`), with the all-ones attention mask both sides pass."""
    import torch
    from gpu_check import gap_batch

    return [{**(b := gap_batch(length, 4 * length, vocab, step, device)),
             "attention_mask": torch.ones_like(b["input_ids"])} for step in range(steps)]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(model, batches: list[dict], device: str, every: int, compile_layers: bool) -> list[float]:
    """The step of longrecipe.train.recipe with checkpointing on every `every`-th decoder layer."""
    import torch

    from longrecipe.train.loop import _ce_sum, auto_chunk, compiled_ce, training_loss

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for i, layer in enumerate(model.model.layers):
        layer.gradient_checkpointing = i % every == 0
    ce = _ce_sum
    if compile_layers:
        for layer in model.model.layers:
            layer.compile()
        ce = compiled_ce()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.startswith("cuda"))
    chunk, gpu, times = auto_chunk(model.config.vocab_size), device.startswith("cuda"), []
    for batch in batches:
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
            loss = training_loss(model, batch, chunk, ce)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def run_trainer(model, batches: list[dict], device: str, liger: bool, compile_model: bool) -> list[float]:
    """Trainer's step. Compiled per decoder layer, as ours: `torch_compile=True` would trace the mask creation too,
    and transformers then builds a full T x T mask (>= 4 GiB at 64k) and SDPA leaves its flash kernel."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    if compile_model:
        for layer in model.model.layers:
            layer.compile()

    data = [{k: v[0] for k, v in b.items()} for b in batches]
    times, t0 = [], [0.0]

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            _sync(device)
            t0[0] = time.perf_counter()

        def on_step_end(self, *a, **k):
            _sync(device)
            times.append(time.perf_counter() - t0[0])

    gpu = device.startswith("cuda")
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=1, max_steps=len(data), learning_rate=1e-5,
            lr_scheduler_type="constant", warmup_steps=0, report_to=[], save_strategy="no", logging_strategy="no",
            use_cpu=not gpu, bf16=gpu, dataloader_num_workers=0, dataloader_pin_memory=False, disable_tqdm=True, seed=0,
            optim="adamw_torch_fused" if gpu else "adamw_torch", gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False}, max_grad_norm=1.0,
            use_liger_kernel=liger)
        trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Clock()],
                          data_collator=lambda f: {k: torch.stack([x[k] for x in f]) for k in f[0]})
        trainer.train()
    return times


def flops_per_step(shape: str, length: int) -> dict[str, float]:
    from longrecipe.train.flops import forward_flops

    conf = dict(SHAPES[shape])
    causal = 3.0 * forward_flops(conf, length)
    d_attn = conf["num_attention_heads"] * conf["head_dim"]
    square = causal + 3.0 * 2 * 2 * conf["num_hidden_layers"] * length**2 * d_attn / 2  # the other half
    return {"causal halved": causal, "full square": square}


def child(side: str, length: int, shape: str, device: str, steps: int, compile_all: bool) -> dict:
    import torch

    gpu = device.startswith("cuda")
    model = build(shape, length, device)
    # Trainer moves its rows to the device itself
    batches = rows(length, model.config.vocab_size, steps, device if side.startswith("ours") else "cpu")
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if side.startswith("ours"):
        times = run_ours(model, batches, device, 1 if side == "ours-full" else 2, compile_all)
    else:
        times = run_trainer(model, batches, device, side == "trainer+liger", compile_all)
    steady = sorted(times[2:] or times[-1:])
    step_s = steady[len(steady) // 2]
    row = {"side": side, "length": length, "position_span": 4 * length, "shape": shape, "steps": len(times),
           "step_s": round(step_s, 4), "tokens_per_s": round(length / step_s, 1),
           "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None}
    for conv, f in flops_per_step(shape, length).items():
        for peak, v in PEAKS.items():
            row[f"mfu {conv} / {peak}"] = round(f / step_s / v, 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--shape", choices=tuple(SHAPES), default="llama-3.2-1b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=4, help="steps per (side, length); the first two are warm-up")
    ap.add_argument("--plan", default="ours-full:32768,65536,131072;ours-selective:32768,65536;"
                    "trainer:32768,65536;trainer+liger:32768,65536", help="SIDE:LENGTHS;... (what one call fits)")
    ap.add_argument("--no-compile", action="store_true", help="eager everywhere (CPU dry-runs)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per (side, length) before it is a row saying so")
    ap.add_argument("--deadline", type=int, default=540, help="seconds for the whole plan: rows not started by "
                    "then are rows saying so (the device call's limit is 600)")
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "LENGTH"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.shape, args.device, args.steps,
                               not args.no_compile)))
        return
    plan = parse_plan(args.plan, ap)
    results, t_all = [], time.time()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for side, n in plan:
        left = args.deadline - (time.time() - t_all)
        row = run_child(args, side, n, min(args.timeout, left)) if left > 30 else {
            "side": side, "length": n, "error": f"not started: the {args.deadline} s deadline"}
        results.append(row)
        print(json.dumps(row), flush=True)
        # rewritten after every row: a call killed at its limit still brings back the rows it finished
        Path(args.out, "gpu_train_1b.json").write_text(json.dumps(
            {"command": " ".join(sys.argv), "rows": results, "wall_s": round(time.time() - t_all, 1)}, indent=1))
    print_table(results)


def parse_plan(text: str, ap: argparse.ArgumentParser) -> list[tuple[str, int]]:
    plan = []
    for item in filter(None, text.split(";")):
        side, sep, lengths = item.partition(":")
        if not sep or side not in SIDES:
            ap.error(f"--plan: {item!r} is not SIDE:LENGTH,... with SIDE one of {', '.join(SIDES)}")
        try:
            plan += [(side, int(n)) for n in lengths.split(",")]
        except ValueError:
            ap.error(f"--plan: {item!r} has a length that is not a whole number")
    return plan


def run_child(args: argparse.Namespace, side: str, n: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--shape", args.shape, "--device", args.device, "--steps", str(args.steps),
           "--child", side, str(n)] + (["--no-compile"] if args.no_compile else [])
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"side": side, "length": n, "error": f"over {timeout:.0f} s", "wall_s": round(time.time() - t0, 1)}
    try:
        row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (ValueError, IndexError):
        row = None
    if row is None:
        tail = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "no output"
        row = {"side": side, "length": n, "error": ("OOM: " if "OutOfMemory" in proc.stderr else "failed: ") + tail}
    row["wall_s"] = round(time.time() - t0, 1)
    return row


def print_table(results: list[dict]) -> None:
    print("| side | length | tok/s | peak GiB | MFU causal/790 | MFU full/790 | MFU causal/989 | MFU full/989 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['side']} | {r['length']} | {r['error'][:60]} | | | | | |")
            continue
        m = [r[f"mfu {c} / {p}"] for p in PEAKS for c in ("causal halved", "full square")]
        print(f"| {r['side']} | {r['length']} | {r['tokens_per_s']:.0f} | {r['peak_mem_GiB']} | "
              + " | ".join(f"{100 * x:.1f}%" for x in m) + " |")
    by = {(r["side"], r["length"]): r for r in results if "error" not in r}
    for (side, n), r in sorted(by.items()):
        for peer in ("trainer", "trainer+liger"):
            if side.startswith("ours") and (peer, n) in by:
                p = by[peer, n]
                mem = (f", peak memory {r['peak_mem_GiB'] / p['peak_mem_GiB']:.2f}x"
                       if r["peak_mem_GiB"] and p["peak_mem_GiB"] else "")
                print(f"{side} / {peer} at {n}: tokens/s {r['tokens_per_s'] / p['tokens_per_s']:.2f}x{mem}")


if __name__ == "__main__":
    main()
