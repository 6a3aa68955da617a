"""Chaos for the trainer (issue #43): SIGKILL a tiny training run at random moments, some while a checkpoint is
being written, re-run the same command each time, then let it finish; the weights and the log must be those of an
uninterrupted run.

    python benchmarks/chaos_train.py --kills 10 --seed 0 --steps 150 --out /tmp/chaos [--json figures.json]

Each kill lands either a random 0-1.5 s after the run logged a step (after resuming), or the moment a checkpoint
folder is half-written (`checkpoints/.step-N.*` present, background saves on). The reference is the same
command run once without kills. Compared: every weight tensor bit for bit, and the log's step, loss, lr, grad_norm
and tokens per step (elapsed time, throughput and memory differ from run to run by nature). Prints one line per kill
and the figures; exit 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONGRECIPE = str(Path(sys.executable).parent / "longrecipe")
CONFIG = str(ROOT / "train" / "configs" / "tiny_longrecipe.yaml")
SETTINGS = ("train.batch_size=2", "train.train_length=256", "train.target_length=512", "train.warmup=2",
            "train.threads=1", "train.lr=1e-3", "train.save_every=3", "train.async_save=true")
DETERMINISTIC = ("step", "loss", "lr", "grad_norm", "tokens")


def command(out: Path, steps: int) -> list[str]:
    return [LONGRECIPE, "train", "--config", CONFIG, f"out={out}", *SETTINGS, f"train.steps={steps}"]


def logged(out: Path) -> list[dict]:
    path = out / "train_log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _partial(out: Path) -> set[str]:
    """Checkpoint folders being written: io.atomic_dir's `.step-N.*` (one process) or `.partial-step-N` (sharded)."""
    try:
        return {n for n in os.listdir(out / "checkpoints") if n.startswith((".step-", ".partial-step-"))}
    except FileNotFoundError:
        return set()


def kill_once(out: Path, steps: int, rng: random.Random, timeout: float = 600) -> dict:
    """Start the run, kill -9 it at the chosen moment; what happened (None when it finished first)."""
    mode = rng.choice(("random", "during-save"))
    delay = rng.uniform(0.0, 1.5)
    start_steps, stale = len(logged(out)), _partial(out)  # a killed save's leftovers are not a save in progress
    proc = subprocess.Popen(command(out, steps), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    fired_at = None
    while proc.poll() is None and time.monotonic() < deadline:
        if mode == "during-save" and _partial(out) - stale:  # polled without a pause: a tiny save lasts milliseconds
            fired_at = "during a checkpoint write"
        elif mode == "random" and len(logged(out)) > start_steps:  # training (again): past where it was
            time.sleep(delay)
            fired_at = "mid-run"
        if fired_at:
            proc.kill()
            break
        elif mode == "random":
            time.sleep(0.005)
    proc.wait()
    saving = bool(_partial(out) - stale)
    done = (out / "model" / "config.json").exists()
    return {"mode": mode, "killed": fired_at is not None and not done, "partial_left": saving,
            "steps_logged": len(logged(out)), "finished_first": done}


def compare(ref: Path, out: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(p / "model" / "model.safetensors")) for p in (ref, out))
    problems = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    la, lb = ([{k: r.get(k) for k in DETERMINISTIC} for r in logged(p)] for p in (ref, out))
    if la != lb:
        problems.append(f"log differs ({len(la)} vs {len(lb)} lines)")
    elapsed = [r["elapsed_s"] for r in logged(out)]
    if elapsed != sorted(elapsed):
        problems.append("elapsed time goes backwards")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=150, help="steps of the run (long enough to outlast the kills)")
    p.add_argument("--out", required=True, help="a scratch folder (emptied first)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    work = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    subprocess.run(command(work / "reference", args.steps), cwd=ROOT, check=True, capture_output=True)
    kills = []
    while len([k for k in kills if k["killed"]]) < args.kills:
        k = kill_once(work / "chaos", args.steps, rng)
        kills.append(k)
        print(f"kill {len(kills)}: {k['mode']}: {'killed' if k['killed'] else 'finished first'}, "
              f"{k['steps_logged']} steps logged, half-written checkpoint left: {k['partial_left']}", flush=True)
        if k["finished_first"]:
            break
    final = subprocess.run(command(work / "chaos", args.steps), cwd=ROOT, capture_output=True, text=True)
    problems = compare(work / "reference", work / "chaos") if final.returncode == 0 else [final.stderr[-500:]]
    figures = {"kills": sum(k["killed"] for k in kills), "during_checkpoint_write": sum(
        k["killed"] and k["partial_left"] for k in kills), "finished_first": sum(k["finished_first"] for k in kills),
        "identical": not problems, "problems": problems, "seconds": round(time.monotonic() - t0, 1),
        "settings": [*SETTINGS, f"train.steps={args.steps}"], "seed": args.seed, "per_kill": kills}
    print(f"kills survived: {figures['kills']} ({figures['during_checkpoint_write']} with a checkpoint half-written);"
          f" weights and log identical to the uninterrupted run: {not problems} {problems or ''}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if not problems and figures["kills"] == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
