"""Training speed and memory: our loop against Hugging Face `Trainer`, same tiny model, data and lengths.

    python benchmarks/train_vs_hf_trainer.py [--lengths 256,1024,2048] [--tokens 16384] [--steps 6]
    python benchmarks/train_vs_hf_trainer.py --profile 2048     # share of the time in kernels both sides run

Both sides train the committed tiny base model (RoPE extended to the longest length), fp32 on CPU, AdamW, on the
same rows (full-length sequences from the Python corpus, `tokens` tokens per step). Each (side, length) runs in a
fresh subprocess; tokens/s is measured over the steps after the first (warm-up); peak memory is the process's
peak RSS growth during the steps over its RSS just before the first step (activations, gradients, optimizer state).
Four sides: our step (chunked loss, fused AdamW, clipping) eager and with its decoder layers compiled
(`train.compile=true`), and `Trainer` with its defaults and with `torch_compile=True`.
Prints a table with our/Trainer ratios; the targets are >= 1.3x Trainer's tokens/s and peak memory at 8x the
length <= 8.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


SIDES = ("ours", "ours+compile", "trainer", "trainer+compile")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def setup(length: int, longest: int, tokens: int, steps: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from longrecipe.base import model_dirs
    from longrecipe.train import data as D
    from longrecipe.train import rope
    from longrecipe.train.config import DataConfig, TrainConfig

    torch.manual_seed(0)
    path = model_dirs.resolve("tiny")
    conf = AutoConfig.from_pretrained(path)
    rope.apply(conf, "ntk-at-target", longest)
    model = AutoModelForCausalLM.from_pretrained(path, config=conf, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(path)
    tcfg = TrainConfig(method="flt", target_length=length, train_length=length)
    builder = D.build(tok, DataConfig(), tcfg)
    rows = max(1, tokens // length)
    batches = [builder.batch(0, s, 0, 0, rows) for s in range(steps)]
    return model, batches


def run_ours(model, batches, lr: float, compile_layers: bool) -> list[float]:
    """The step of longrecipe.train.recipe: chunked loss (auto chunk), clipping at 1.0, fused AdamW."""
    import torch

    from longrecipe.train.loop import _ce_sum, auto_chunk, compiled_ce, training_loss

    ce = _ce_sum
    if compile_layers:  # what train.compile=true does: each decoder layer and the loss chunk
        for layer in model.model.layers:
            layer.compile()
        ce = compiled_ce()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    chunk = auto_chunk(model.config.vocab_size)
    times = []
    for batch in batches:
        t0 = time.perf_counter()
        loss = training_loss(model, batch, chunk, ce)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def run_trainer(model, batches, lr: float, out: str, compile_model: bool) -> list[float]:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    rows = [{"input_ids": b["input_ids"][i], "labels": b["labels"][i], "position_ids": b["position_ids"][i],
             "attention_mask": torch.ones_like(b["input_ids"][i])} for b in batches for i in range(len(b["input_ids"]))]
    per_step = len(batches[0]["input_ids"])
    times, t0 = [], [0.0]

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            t0[0] = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - t0[0])

    args = TrainingArguments(output_dir=out, per_device_train_batch_size=per_step, max_steps=len(batches),
                             learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, report_to=[],
                             save_strategy="no", logging_strategy="no", use_cpu=True, dataloader_num_workers=0,
                             disable_tqdm=True, seed=0, optim="adamw_torch", torch_compile=compile_model)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                      data_collator=lambda feats: {k: torch.stack([f[k] for f in feats]) for k in feats[0]})
    trainer.train()
    return times


def child(side: str, length: int, longest: int, tokens: int, steps: int) -> None:
    import tempfile

    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model, batches = setup(length, longest, tokens, steps)
    before = rss_mib()
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    compiled = side.endswith("+compile")
    if side.startswith("ours"):
        times = run_ours(model, batches, 1e-4, compiled)
    else:
        with tempfile.TemporaryDirectory() as out:
            times = run_trainer(model, batches, 1e-4, out, compiled)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tok_step = len(batches[0]["input_ids"]) * length
    steady = times[2:]  # step 1 (and the compile in it) and step 2 (recompiles, allocator) are warm-up
    print(json.dumps({"side": side, "length": length, "tokens_per_step": tok_step,
                      "tokens_per_s": tok_step * len(steady) / sum(steady),
                      "peak_growth_mib": max(0.0, peak - max(before, base_peak)) + 0.0,
                      "peak_rss_mib": peak}))


def profile_floor(length: int, tokens: int) -> None:
    """Where a step's time goes at `length`: self CPU time of matrix multiplies and SDPA attention in our
    forward+backward and in the model's own forward (what Trainer calls), under torch.profiler. Both sides run
    these kernels on the same shapes, so (Trainer's step time) / (their time in ours) bounds any speed-up of our
    step over Trainer's, however cheap everything else became."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from longrecipe.train.loop import _ce_sum, auto_chunk, training_loss

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model, batches = setup(length, length, tokens, 3)
    chunk = auto_chunk(model.config.vocab_size)

    def ours(b):
        training_loss(model, b, chunk, _ce_sum).backward()

    def hf(b):
        model(input_ids=b["input_ids"], labels=b["labels"], position_ids=b["position_ids"],
              attention_mask=torch.ones_like(b["input_ids"])).loss.backward()

    for name, step in (("ours", ours), ("trainer's forward", hf)):
        step(batches[0])  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(batches[1])
        ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
        total = sum(ops.values())
        shared = sum(v for k, v in ops.items() if k in ("aten::mm", "aten::bmm", "aten::addmm")
                     or "scaled_dot_product" in k)
        model.zero_grad(set_to_none=True)
        print(json.dumps({"side": name, "length": length, "self_cpu_s": round(total, 3),
                          "mm_and_sdpa_s": round(shared, 3), "share": round(shared / total, 3)}), flush=True)
    print(json.dumps({"attention fwd+bwd s": _attention_backends(len(batches[0]["input_ids"]), length,
                                                                 model.config)}), flush=True)


def _attention_backends(rows: int, length: int, conf) -> dict[str, float]:
    """One layer's causal attention forward+backward with SDPA's flash and math CPU kernels (mean of 3)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    shape = (rows, conf.num_attention_heads, length, conf.hidden_size // conf.num_attention_heads)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    out = {}
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
        with sdpa_kernel(backend):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
            t0 = time.perf_counter()
            for _ in range(3):
                torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        out[name] = round((time.perf_counter() - t0) / 3, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="256,1024,2048")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "LENGTH"))
    ap.add_argument("--profile", type=int, metavar="LENGTH", help="only print where a step's time goes")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.profile:
        profile_floor(args.profile, args.tokens)
        return
    if args.child:
        child(args.child[0], int(args.child[1]), max(lengths), args.tokens, args.steps)
        return
    res = {}
    for length in lengths:
        for side in SIDES:
            out = subprocess.run([sys.executable, __file__, "--lengths", args.lengths, "--tokens", str(args.tokens),
                                  "--steps", str(args.steps), "--child", side, str(length)],
                                 capture_output=True, text=True, check=True)
            res[side, length] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(res[side, length]), flush=True)
    print("| length | " + " | ".join(f"{s} tok/s" for s in SIDES) + " | ours+compile / trainer | ours / trainer"
          " | ours+compile / trainer+compile | " + " | ".join(f"{s} peak growth MiB" for s in SIDES) + " |")
    print("|---" * (2 * len(SIDES) + 4) + "|")
    for n in lengths:
        tps = {s: res[s, n]["tokens_per_s"] for s in SIDES}
        print(f"| {n} | " + " | ".join(f"{tps[s]:.0f}" for s in SIDES)
              + f" | {tps['ours+compile'] / tps['trainer']:.2f}x | {tps['ours'] / tps['trainer']:.2f}x"
              + f" | {tps['ours+compile'] / tps['trainer+compile']:.2f}x | "
              + " | ".join(f"{res[s, n]['peak_growth_mib']:.0f}" for s in SIDES) + " |")
    lo, hi = lengths[0], lengths[-1]
    for side in SIDES:
        ratio = res[side, hi]["peak_growth_mib"] / max(res[side, lo]["peak_growth_mib"], 1e-9)
        print(f"{side}: peak memory growth at {hi} / at {lo} = {ratio:.2f}x (length ratio {hi / lo:.0f}x)")


if __name__ == "__main__":
    main()
