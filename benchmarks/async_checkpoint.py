"""Background (`train.async_save`) vs foreground checkpoint saves: how long training waits for a save.

    python benchmarks/async_checkpoint.py [--layers 8 --hidden 768 --steps 12 --save-every 3]

One process, a Llama-shaped model with random weights (no download), AdamW, random tokens; the same steps are run
three ways in one go: no saves, foreground saves (the peer) and background saves (`train/checkpoint.py`,
Checkpointer). Reported: the time the training loop spent inside `save` (the stall), the whole loop's wall time,
and background/foreground ratios. Each save writes the weights and AdamW state (12 bytes per parameter) and hashes
them for the manifest; the last save is waited for inside the timed loop.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from longrecipe.train.checkpoint import Checkpointer  # noqa: E402
from longrecipe.train.recipe import Dist  # noqa: E402


def run(mode: str, args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """(seconds inside save, seconds of the whole loop) for one way of saving."""
    torch.manual_seed(0)
    conf = LlamaConfig(vocab_size=8192, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                       num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                       num_key_value_heads=args.hidden // 64, max_position_embeddings=args.length)
    model = LlamaForCausalLM(conf)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    saver = Checkpointer(out, Dist(), asynchronous=mode == "background")
    stall, t0 = 0.0, time.perf_counter()
    for step in range(args.steps):
        ids = torch.randint(0, conf.vocab_size, (args.batch, args.length))
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if mode != "none" and (step + 1) % args.save_every == 0:
            s0 = time.perf_counter()
            saver.save(step + 1, model, opt, sched)
            stall += time.perf_counter() - s0
    s0 = time.perf_counter()
    saver.wait()
    stall += time.perf_counter() - s0
    return stall, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--save-every", type=int, default=3)
    ap.add_argument("--dir", default="", help="where checkpoints are written (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="async-ckpt-"))
    results = {}
    for mode in ("none", "foreground", "background"):
        out = root / mode
        shutil.rmtree(out, ignore_errors=True)
        results[mode] = run(mode, args, out)
        size = sum(f.stat().st_size for f in (out / "checkpoints").rglob("*") if f.is_file()) if mode != "none" else 0
        print(f"{mode:10s} stall {results[mode][0]:7.2f} s  loop {results[mode][1]:7.2f} s"
              + (f"  (newest checkpoints on disk: {size / 2**20:.0f} MiB)" if size else ""), flush=True)
        shutil.rmtree(out, ignore_errors=True)
    fg, bg, none = results["foreground"], results["background"], results["none"]
    saves = args.steps // args.save_every
    print(f"saves: {saves}; stall per save: foreground {fg[0] / saves:.2f} s, background {bg[0] / saves:.2f} s")
    print(f"background/foreground: stall {bg[0] / fg[0]:.2f}x, loop {bg[1] / fg[1]:.2f}x; "
          f"loop over no saves: foreground {fg[1] / none[1]:.2f}x, background {bg[1] / none[1]:.2f}x")


if __name__ == "__main__":
    main()
