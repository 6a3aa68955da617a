"""Where the baselines' short-context loss comes from (#17 B): PoSE and RandPos of the toy study, as the paper runs
them, then with LongRecipe's post-training (replay + the 0.5/0.5 merge with the base) or the merge alone, and with a
share of plain rows (`data.plain_fraction`); RULER's NIAH mean (8 variants) and passkey at 512 and 2048.

    # LONGRECIPE_ESSAYS_DIR set (the demo's essay haystacks)
    python benchmarks/baseline_post_training.py --plain-fraction 0 --out runs/pilot0 --methods randpos,pose
    python benchmarks/baseline_post_training.py --plain-fraction 0.25 --out runs/pilot25 \
        --methods pose,randpos,longrecipe
    python benchmarks/baseline_post_training.py --show runs/pilot0 runs/pilot25

Every model is the demo's (seed 0, `longrecipe demo`'s data, steps, RoPE and replay settings; the LongRecipe run is
its whole recipe, analysis against this folder's PoSE model), evaluated by the demo's harness with 20 samples per
task and length. Results in benchmarks/RESULTS.md ("The baselines' loss at 512").
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

LENGTHS = (512, 2048)


def run(out: str, plain_fraction: float, methods: list[str]) -> None:
    from longrecipe.recipes.demo import RULER_TASKS, Demo, DemoConfig
    from longrecipe.train.merge import merge_models

    cfg = DemoConfig(out=out, samples=20, seed=0, plain_fraction=plain_fraction, ruler_tasks=RULER_TASKS[:8],
                     essay_dir=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    d = Demo(cfg)
    c = d.cfg
    suites = ("ruler", "passkey")
    for m in methods:
        if m == "longrecipe":
            pose = d.train("pose", d.method_config("pose"), d._extension_overrides(c.train_length))
            d.evaluate(m, d.longrecipe(c.ratio, d.analysis(pose))["merged"], suites, LENGTHS)
            continue
        ext = d.train(m, d.method_config(m), d._extension_overrides(c.train_length))
        d.evaluate(f"{m}-rm", d.post_train(f"{m}-rm", ext)["merged"], suites, LENGTHS)  # = --same-post-training
        merged = d.out / "train" / f"{m}-m" / "merged"
        if not (merged / "config.json").exists():
            merge_models([str(ext), str(d.base)], [c.merge_weight, 1 - c.merge_weight], merged)
        d.evaluate(f"{m}-m", merged, suites, LENGTHS)
        d.evaluate(m, ext, suites, LENGTHS)


def show(folders: list[str]) -> None:
    """One line per evaluated model: NIAH mean (8 variants) and passkey at each length."""
    print("| folder | model | " + " | ".join(f"NIAH {n}" for n in LENGTHS) + " | "
          + " | ".join(f"passkey {n}" for n in LENGTHS) + " |")
    for folder in folders:
        for path in sorted(Path(folder).glob("eval/*/results.json")):
            niah, pk = defaultdict(list), {}
            for s in json.loads(path.read_text())["scores"]:
                if s["suite"] == "ruler" and s["task"].startswith("niah"):
                    niah[s["context_length"]].append(s["value"])
                elif s["suite"] == "passkey":
                    pk[s["context_length"]] = s["value"]
            cells = [f"{sum(niah[n]) / len(niah[n]):.1f}" for n in LENGTHS] + [f"{pk[n]:.0f}" for n in LENGTHS]
            print(f"| {folder} | {path.parent.name} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/pilot0")
    p.add_argument("--plain-fraction", type=float, default=0.0)
    p.add_argument("--methods", default="randpos,pose")
    p.add_argument("--show", nargs="*", default=None, help="print the table of these folders and stop")
    args = p.parse_args()
    if args.show is not None:
        show(args.show or [args.out])
        return
    run(args.out, args.plain_fraction, args.methods.split(","))
    show([args.out])


if __name__ == "__main__":
    main()
