"""`longrecipe train --plan`'s memory estimate against the measured peak of real training runs (CPU here).

    python benchmarks/plan_memory.py [--steps 2] [--allocator default|mmap]

Each case is a real `longrecipe train` run (tiny model, a few steps) in its own process; the measured value is the
log's `train_mem_mb` (peak resident set minus the resident set just before the model was loaded), the estimate is
`train.plan.plan_for` for the same config. Last line: `worst |estimate/measured - 1| = X`. `--allocator mmap`
sets MALLOC_MMAP_THRESHOLD_=65536, so glibc returns freed tensors to the system instead of keeping them in its heap
(what the resident set then measures is live memory, which is what the estimate counts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()

CASES = (  # (train_length, batch_size, checkpointing, method)
    (512, 4, "none", "flt"),
    (2048, 4, "none", "flt"),
    (4096, 2, "none", "flt"),
    (4096, 2, "full", "flt"),
    (4096, 2, "selective", "flt"),
    (8192, 1, "full", "flt"),
    (2048, 8, "none", "longrecipe"),
)


def measure(length: int, batch: int, ckpt: str, method: str, steps: int, allocator: str,
            work: Path) -> tuple[float, float]:
    """(estimated MiB, measured MiB) of one case."""
    from longrecipe.train.plan import plan_for
    from longrecipe.train.recipe import load_config

    target = max(length, 2048)
    overrides = [f"out={work / f'{method}-{length}-{batch}-{ckpt}'}", f"train.method={method}",
                 f"train.train_length={length}", f"train.target_length={target if method != 'flt' else length}",
                 f"train.batch_size={batch}", f"train.checkpointing={ckpt}", f"train.steps={steps}",
                 "train.save_every=0", "train.threads=1"]
    cfg = load_config("train/configs/tiny_longrecipe.yaml", overrides)
    est = plan_for(cfg).total / 2**20
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if allocator == "mmap":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    subprocess.run([sys.executable, "-m", "longrecipe", "train", "--config", "train/configs/tiny_longrecipe.yaml",
                    *overrides], check=True, env=env, capture_output=True, text=True)
    rows = [json.loads(line) for line in (Path(cfg.out) / "train_log.jsonl").read_text().splitlines()]
    return est, max(r["train_mem_mb"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--allocator", choices=("default", "mmap"), default="default")
    args = ap.parse_args()
    worst = 0.0
    print(f"{'tokens':>6} {'rows':>4} {'ckpt':>9} {'method':>10} {'estimate MiB':>12} {'measured MiB':>12} "
          f"{'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            est, got = measure(*case, args.steps, args.allocator, Path(tmp))
            worst = max(worst, abs(est / got - 1))
            print(f"{case[0]:>6} {case[1]:>4} {case[2]:>9} {case[3]:>10} {est:12.1f} {got:12.1f} {est / got:6.2f}",
                  flush=True)
    print(f"worst |estimate/measured - 1| = {worst:.3f} (allocator {args.allocator})")


if __name__ == "__main__":
    main()
