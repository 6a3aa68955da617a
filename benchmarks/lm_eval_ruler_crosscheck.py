"""Cross-check against the reference harness: lm-eval 0.4.13's own `ruler` tasks and its `hf` model on
SmolLM2-135M-Instruct, beside `longrecipe eval` on the same tasks, lengths and sample counts (chat template on for
both). Writes docs/smollm2/lm_eval_crosscheck.md.

    python benchmarks/lm_eval_ruler_crosscheck.py --lengths 1024,2048 --samples 5

Only the RULER tasks of lm-eval that run offline are compared (niah_single_1: noise haystack; niah_multikey_2:
needle haystack); its essay and QA tasks download data at import time. lm-eval draws its own samples (its own
random streams), so the two sides score different samples of the same task definition: the comparison is of
per-task scores, not per sample. lm-eval builds 500 samples per length and `limit` keeps the first N; each length
runs separately so that every length gets N.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "smollm2"
TASKS = ("niah_single_1", "niah_multikey_2")


def ours(length: int, samples: int) -> tuple[dict[str, float], float]:
    out = DOCS / "runs" / "crosscheck-longrecipe"
    t0 = time.time()
    subprocess.run([str(Path(sys.executable).parent / "longrecipe"), "eval", "--model", "smollm2-135m", "--suite",
                    "ruler", "--ruler-tasks", ",".join(TASKS), "--lengths", str(length), "--samples", str(samples),
                    "--chat-template", "--out", str(out)], check=True, cwd=ROOT)
    rows = json.loads((out / "results.json").read_text())["scores"]
    return {r["task"]: r["value"] for r in rows if r["context_length"] == length and r["task"] in TASKS}, \
        time.time() - t0


def reference(model_dir: Path, length: int, samples: int) -> tuple[dict[str, float], float]:
    import lm_eval

    t0 = time.time()
    res = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model_dir), "max_length": length, "dtype": "float32",
                                "device": "cpu", "trust_remote_code": False},
        tasks=list(TASKS), metadata={"max_seq_lengths": [length], "tokenizer": str(model_dir)}, limit=samples,
        apply_chat_template=True, batch_size=8, log_samples=False)
    scores = {t: 100 * float(res["results"][t][f"{length},none"]) for t in TASKS}
    return scores, time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1024,2048")
    p.add_argument("--samples", type=int, default=5)
    args = p.parse_args()
    from longrecipe.base import models

    model_dir = models.resolve("smollm2-135m")
    lines = ["| task | length | samples | longrecipe | lm-eval 0.4.13 | longrecipe s | lm-eval s |",
             "|---|---|---|---|---|---|---|"]
    for length in (int(x) for x in args.lengths.split(",")):
        a, ta = ours(length, args.samples)
        b, tb = reference(model_dir, length, args.samples)
        for t in TASKS:
            lines.append(f"| {t} | {length} | {args.samples} | {a[t]:.1f} | {b[t]:.1f} | {ta:.0f} | {tb:.0f} |")
            print(lines[-1], flush=True)
    (DOCS / "lm_eval_crosscheck.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
