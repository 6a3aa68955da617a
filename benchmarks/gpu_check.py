"""GPU verification in one call (issue: flash path, vLLM on CUDA, MFU and memory at long sequences).

    python benchmarks/gpu_check.py [--steps 6] [--lengths 16384,32768,65536] [--out DIR]

1. Correctness: the trainer's loss (longrecipe.train.loop.training_loss) on the tiny base model with LongRecipe gap
   positions, gradient checkpointing on, bf16: SDPA's flash backend (forced, so it fails rather than falls back;
   flash-attn too when installed) against eager attention.
2. vLLM on CUDA against the hf backend, when `vllm` is importable.
3. Throughput: a randomly initialised Llama-3.2-1B-shaped model, one sequence of 32k tokens whose LongRecipe
   positions span 128k, bf16 autocast, gradient checkpointing, chunked loss; tokens/s and MFU against 790 TFLOP/s.
   Peak memory at each length.
The last lines are a short table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ROOT, ensure_importable  # noqa: E402

ensure_importable()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from longrecipe.train.loop import training_loss  # noqa: E402
from longrecipe.train.positions import longrecipe_positions  # noqa: E402

PEAK_TFLOPS = 790.0  # bf16 dense matmul measured on this workplace's H200 (device KINDS.md)
LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True)


def gap_batch(length: int, target: int, vocab: int, seed: int, device: str) -> dict[str, torch.Tensor]:
    """One row of `length` tokens in sentence-like segments (8-64 tokens) with LongRecipe positions over `target`."""
    rng = np.random.default_rng(seed)
    segs, left = [], length
    while left > 0:
        segs.append(min(left, int(rng.integers(8, 65))))
        left -= segs[-1]
    pos = longrecipe_positions(segs, target, rng)
    ids = torch.from_numpy(rng.integers(0, vocab, size=(1, length))).to(device)
    return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.tensor([pos], device=device)}


def _loss_and_grad(model, batch, bf16: bool, flash_only: bool) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ctx = sdpa_kernel([SDPBackend.FLASH_ATTENTION]) if flash_only else contextlib.nullcontext()
    with ctx:  # backward (and the checkpoint recompute in it) also runs under the forced kernel
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = training_loss(model, batch)
        loss.backward()
    grad = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return {"loss": loss.item(), "grad_norm": grad.norm().item()}


def check_flash(results: dict) -> None:
    """Same batch (LongRecipe gaps over 2048, 1024 tokens), gradient checkpointing on, every attention path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ROOT / "longrecipe" / "assets" / "tiny-base"
    tok = AutoTokenizer.from_pretrained(path)
    batch = gap_batch(1024, 2048, len(tok), 0, "cuda")
    runs = {"eager fp32": ("eager", False, False), "eager bf16": ("eager", True, False),
            "sdpa-flash bf16": ("sdpa", True, True), "flash_attention_2 bf16": ("flash_attention_2", True, False)}
    losses: dict = {}
    for name, (impl, bf16, flash_only) in runs.items():
        try:
            model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=impl, dtype=torch.float32).cuda()
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
            losses[name] = _loss_and_grad(model, batch, bf16, flash_only)
        except Exception as err:  # e.g. flash-attn not installed
            losses[name] = f"n/a ({type(err).__name__}: {str(err)[:200]})"
    ref = losses.get("eager bf16")
    for v in losses.values():
        if isinstance(v, dict) and isinstance(ref, dict):
            v["rel_diff_vs_eager_bf16"] = abs(v["loss"] - ref["loss"]) / abs(ref["loss"])
            v["grad_norm_rel_diff"] = abs(v["grad_norm"] - ref["grad_norm"]) / ref["grad_norm"]
    results["flash_vs_eager"] = losses


def measure_peak(results: dict) -> None:
    """bf16 8192^3 matmul TFLOP/s on random data (the ceiling the MFU is quoted against is 790)."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    results["measured_bf16_matmul_tflops"] = 20 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12


def check_vllm(results: dict) -> None:
    try:
        import vllm  # noqa: F401
    except Exception as err:
        results["vllm"] = f"not available in the image ({type(err).__name__}: {err})"
        return
    results["vllm"] = f"importable: vllm {vllm.__version__} (agreement run not implemented in this script yet)"


def count_flops(cfg, length: int) -> dict[str, float]:
    """Model FLOPs of one training step (forward + backward = 3x forward; checkpoint recompute NOT counted).

    Matmul FLOPs: 2 per multiply-add, over every linear layer including the LM head.
    Attention FLOPs (causal): QK^T and PV each 2*T*T*d_attn per layer for full attention; causal counts half."""
    h, layers, inter, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size
    head = h // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * head
    per_layer = h * h + 2 * h * kv + h * h + 3 * h * inter  # q, k, v, o, gate/up/down
    linear = 2 * length * (layers * per_layer + h * vocab)
    attn = 2 * 2 * layers * length * length * h / 2
    return {"linear": 3.0 * linear, "attention": 3.0 * attn, "total": 3.0 * (linear + attn)}


def _time_steps(model, opt, length: int, target: int, steps: int, autocast: bool) -> tuple[float, float]:
    times, loss = [], None
    for step in range(steps):
        batch = gap_batch(length, target, model.config.vocab_size, step, "cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = training_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:])), float(loss.item())


def bench_1b(results: dict, lengths: list[int], steps: int, head_dim: int = 64) -> None:
    """One model (fp32 master weights, bf16 autocast: the trainer's GPU mode) timed at each length; then the
    same at 32k with bf16 weights and no autocast, to show what the casts cost."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rows: list = results.setdefault("throughput_1b", [])
    shape = {**LLAMA_1B, "num_attention_heads": LLAMA_1B["hidden_size"] // head_dim}
    cfg = LlamaConfig(**shape, max_position_embeddings=4 * max(lengths),
                      rope_parameters={"rope_type": "default", "rope_theta": 500000.0 * 16})
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = sum(p.numel() for p in model.parameters()) / 1e9
    variants = [(n, "fp32 weights + bf16 autocast", True) for n in lengths]
    if 32768 in lengths:
        variants.append((32768, "bf16 weights, no autocast", False))
    for length, mode, autocast in variants:
        if not autocast:
            model = model.to(torch.bfloat16)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            step_s, loss = _time_steps(model, opt, length, 4 * length, steps, autocast)
        except torch.OutOfMemoryError as err:
            rows.append({"length": length, "mode": mode, "error": f"OOM: {str(err)[:200]}"})
            del opt
            continue
        flops = count_flops(cfg, length)
        rows.append({"length": length, "target_span": 4 * length, "mode": mode, "head_dim": head_dim,
                     "params_B": round(params, 3),
                     "step_s": step_s, "tokens_per_s": length / step_s,
                     "mfu": flops["total"] / step_s / (PEAK_TFLOPS * 1e12),
                     "attn_share_of_flops": flops["attention"] / flops["total"],
                     "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2**30, "loss": loss})
        print(json.dumps(rows[-1]), flush=True)
        del opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--lengths", default="16384,32768,65536")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--head-dims", default="64", help="comma list: 64 = Llama-3.2-1B's heads; 128 = 16 heads")
    ap.add_argument("--skip-checks", action="store_true", help="only the throughput part")
    args = ap.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(0),
               "torch": torch.__version__, "command": " ".join(sys.argv)}
    import transformers

    results["transformers"] = transformers.__version__
    lengths = [int(x) for x in args.lengths.split(",")]
    parts = [] if args.skip_checks else [("peak", lambda: measure_peak(results)),
                                         ("flash", lambda: check_flash(results)), ("vllm", lambda: check_vllm(results))]
    for hd in (int(x) for x in args.head_dims.split(",")):
        parts.append((f"1b-hd{hd}", lambda hd=hd: bench_1b(results, lengths, args.steps, hd)))
    for name, fn in parts:
        try:
            fn()
        except Exception as err:  # keep going: one failed check must not hide the others
            results[f"{name}_error"] = f"{type(err).__name__}: {err}"
        print(f"[{name} done]", flush=True)
    Path(args.out, "gpu_check.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "throughput_1b"}, indent=1))
    print("| length | span | head dim | mode | tok/s | MFU | peak GiB |")
    for r in (r for r in results.get("throughput_1b", []) if "error" not in r):
        print(f"| {r['length']} | {r['target_span']} | {r['head_dim']} | {r['mode']} | {r['tokens_per_s']:.0f} "
              f"| {100 * r['mfu']:.1f}% "
              f"| {r['peak_mem_GiB']:.1f} |")


if __name__ == "__main__":
    main()
