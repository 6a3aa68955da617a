"""SmolLM2-135M-Instruct through the task families beyond RULER (#46's acceptance): HELMET's JSON KV and BABILong's
qa1-qa5 at 1k, 4k and 8k (its native window), 20 samples per cell, beside the RULER report in docs/smollm2/.

    python benchmarks/smollm2_families.py --lengths 1024,4096,8192 --samples 20 --backend vllm \
        --essay-dir ../shared/data/paul_graham_essays

Each family as its reference runs an instruct model: JSON KV without the chat template (HELMET's recall configs set
use_chat_template: false), BABILong with it (the reference's chat_template_yes runs: the prompt is one user turn).
BABILong's facts are generated (offline; tasks/babilong.py says how they differ from the published data). The runs
live in docs/smollm2/runs/ (resumable: re-running computes only missing cells); the tables and plots go to
docs/smollm2/families/ (`longrecipe report`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "smollm2"
CLI = str(Path(sys.executable).parent / "longrecipe")
FAMILIES = {"json_kv": [], "babilong": ["--chat-template"]}


def evaluate(suite: str, backend: str, lengths: str, samples: int, essays: str | None) -> Path:
    out = DOCS / "runs" / f"smollm2-{suite}-{backend}"
    cmd = [CLI, "eval", "--model", "smollm2-135m", "--suite", suite, "--lengths", lengths, "--samples", str(samples),
           "--backend", backend, "--out", str(out.relative_to(ROOT)), *FAMILIES[suite]]
    if essays and suite == "babilong":  # relative, so the committed eval_config.json names no machine's path
        cmd += ["--essay-dir", os.path.relpath(essays, ROOT)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1024,4096,8192")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--backend", default="vllm", choices=("hf", "vllm"))
    p.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    p.add_argument("--suites", default=",".join(FAMILIES), help="comma list of " + ", ".join(FAMILIES))
    args = p.parse_args()
    runs = [evaluate(s, args.backend, args.lengths, args.samples, args.essay_dir) for s in args.suites.split(",")]
    subprocess.run([CLI, "report", *map(str, runs), "--out", str(DOCS / "families")], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
