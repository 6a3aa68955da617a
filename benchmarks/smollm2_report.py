"""The SmolLM2-135M-Instruct report in docs/smollm2/: a real pretrained model through the whole harness.

    python benchmarks/smollm2_report.py --lengths 1024,2048,4096 --samples 5 --vllm-lengths 1024

runs `longrecipe eval` (chat template on) with the hf backend for RULER's 11 non-QA tasks, the NIAH grid (11
depths) and passkey at each length, the same prompts through the vLLM CPU backend at `--vllm-lengths`, then writes
the tables and plots (`longrecipe report`) and the per-sample agreement of the two backends' greedy answers into
docs/smollm2/. Every run lives in docs/smollm2/runs/ (predictions are append-only JSONL, no prompts in them) and is
committed with the report (predictions, results.json, eval_config.json: well under 1 MB): re-running the command
on any machine resumes, and adding lengths (e.g. 16384 on a bigger machine) only computes the new cells.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "smollm2"
CLI = str(Path(sys.executable).parent / "longrecipe")
RULER = ("niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah_multikey_2,niah_multikey_3,"
         "niah_multivalue,niah_multiquery,vt,cwe,fwe")


def evaluate(backend: str, lengths: str, samples: int, essays: str | None, depths: int = 11, batch_size: int = 8,
             name: str = "") -> Path:
    out = DOCS / "runs" / (name or f"smollm2-{backend}")
    cmd = [CLI, "eval", "--model", "smollm2-135m", "--suite", "ruler,niah,passkey", "--ruler-tasks", RULER,
           "--lengths", lengths, "--samples", str(samples), "--niah-depths", str(depths), "--chat-template",
           "--backend", backend, "--out", str(out.relative_to(ROOT)), "--allow-extrapolation",
           "--batch-size", str(batch_size)]  # cwd=ROOT
    if essays:  # relative to the repository, so the committed eval_config.json names no machine's path
        cmd += ["--essay-dir", os.path.relpath(essays, ROOT)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def agreement(a: Path, b: Path) -> list[dict]:
    """Per prediction file present in both runs: samples whose greedy answers are identical."""
    rows = []
    for fa in sorted((a / "predictions").rglob("*.jsonl")):
        fb = b / fa.relative_to(a)
        if not fb.is_file():
            continue
        pa = {r["index"]: r["prediction"] for r in map(json.loads, fa.read_text().splitlines())}
        pb = {r["index"]: r["prediction"] for r in map(json.loads, fb.read_text().splitlines())}
        both = sorted(set(pa) & set(pb))
        rows.append({"file": str(fa.relative_to(a / "predictions")), "n": len(both),
                     "identical": sum(pa[i].strip() == pb[i].strip() for i in both)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1024,2048,4096")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--vllm-lengths", default="1024", help="lengths for the vLLM CPU backend ('' to skip)")
    p.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    p.add_argument("--niah-depths", type=int, default=11)
    p.add_argument("--batch-size", type=int, default=8, help="hf rows per generate call (on CPU prompts of >= "
                   "2048 tokens run one per call anyway: longrecipe.base.inference.CPU_ALONE_FROM)")
    p.add_argument("--name", default="", help="run folder under docs/smollm2/runs (default smollm2-BACKEND): "
                   "a length run with other sample counts, e.g. 16k with fewer samples, goes into its own run")
    args = p.parse_args()
    if args.name and not args.name.replace("-", "").replace("_", "").isalnum():
        p.error(f"--name {args.name!r}: letters, digits, '-' and '_' only (a folder under docs/smollm2/runs)")
    hf = evaluate("hf", args.lengths, args.samples, args.essay_dir, args.niah_depths, args.batch_size, args.name)
    if args.vllm_lengths:
        vllm = evaluate("vllm", args.vllm_lengths, args.samples, args.essay_dir, args.niah_depths)
        rows = agreement(hf, vllm)
        n, same = sum(r["n"] for r in rows), sum(r["identical"] for r in rows)
        lines = ["| predictions | samples | identical greedy answers |", "|---|---|---|"]
        lines += [f"| {r['file']} | {r['n']} | {r['identical']} |" for r in rows]
        lines.append(f"| **all** | **{n}** | **{same} ({100 * same / max(n, 1):.1f} %)** |")
        (DOCS / "agreement.md").write_text("\n".join(lines) + "\n")
        print(f"hf vs vllm: {same}/{n} identical greedy answers")
    runs = sorted(d for d in (DOCS / "runs").iterdir() if (d / "results.json").is_file())  # every run, earlier too
    subprocess.run([CLI, "report", *map(str, runs), "--out", str(DOCS)], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
