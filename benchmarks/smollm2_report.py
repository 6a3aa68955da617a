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


def evaluate(backend: str, lengths: str, samples: int, essays: str | None) -> Path:
    out = DOCS / "runs" / f"smollm2-{backend}"
    cmd = [CLI, "eval", "--model", "smollm2-135m", "--suite", "ruler,niah,passkey", "--ruler-tasks", RULER,
           "--lengths", lengths, "--samples", str(samples), "--niah-depths", "11", "--chat-template",
           "--backend", backend, "--out", str(out.relative_to(ROOT)), "--allow-extrapolation"]  # cwd=ROOT
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
    args = p.parse_args()
    hf = evaluate("hf", args.lengths, args.samples, args.essay_dir)
    runs = [hf]
    if args.vllm_lengths:
        vllm = evaluate("vllm", args.vllm_lengths, args.samples, args.essay_dir)
        runs.append(vllm)
        rows = agreement(hf, vllm)
        n, same = sum(r["n"] for r in rows), sum(r["identical"] for r in rows)
        lines = ["| predictions | samples | identical greedy answers |", "|---|---|---|"]
        lines += [f"| {r['file']} | {r['n']} | {r['identical']} |" for r in rows]
        lines.append(f"| **all** | **{n}** | **{same} ({100 * same / max(n, 1):.1f} %)** |")
        (DOCS / "agreement.md").write_text("\n".join(lines) + "\n")
        print(f"hf vs vllm: {same}/{n} identical greedy answers")
    subprocess.run([CLI, "report", *map(str, runs), "--out", str(DOCS)], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
