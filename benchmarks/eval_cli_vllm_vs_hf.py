"""`longrecipe eval --backend vllm` against `--backend hf` through the CLI, on the same jobs (#19 item 8).

    python benchmarks/eval_cli_vllm_vs_hf.py [--tasks niah_single_1,niah_multikey_2] [--lengths 512,1024] \
        [--samples 200] [--batch-size 8]

The embedded tiny model, RULER jobs of >= 200 requests each (one job = one task at one length), greedy, RULER's
tokens to generate, each backend one `longrecipe eval` command in a fresh process and a fresh run folder.
"start-up included" is the command's wall time (imports, model or engine load, sample generation, prediction,
scoring); "start-up excluded" is the sum of the jobs' prediction times that the runner logs ("N samples in
X s"; the runner batches across jobs, so a job's time is its rows' share of the batches it was in).
The last line prints vllm / hf for both; the issue's figure of merit is the ratio, measured on one machine in one
go. Greedy answers of the two backends are compared sample by sample.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = re.compile(r"^(\S+)@(\d+): (\d+) samples in ([\d.]+)s", re.M)


def run(backend: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "eval", "--model", "tiny", "--backend", backend,
           "--suite", "ruler", "--ruler-tasks", args.tasks, "--lengths", args.lengths, "--samples",
           str(args.samples), "--batch-size", str(args.batch_size), "--allow-extrapolation", "--out", str(out)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"{backend} failed:\n{proc.stderr[-3000:]}")
    jobs = {f"{m[1]}@{m[2]}": (int(m[3]), float(m[4])) for m in JOB.finditer(proc.stdout + proc.stderr)}
    preds = {}
    for f in sorted(out.glob("predictions/**/*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            preds[f.relative_to(out).as_posix(), row["index"]] = row["prediction"]
    return {"wall": wall, "jobs": jobs, "preds": preds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="niah_single_1,niah_multikey_2")
    p.add_argument("--lengths", default="512,1024")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cli-vllm-hf-"))
    res = {b: run(b, args, work / b) for b in ("hf", "vllm")}
    hf, vl = res["hf"], res["vllm"]
    print("| job | requests | hf predict s | vllm predict s | vllm / hf speed |")
    print("|---|---|---|---|---|")
    for job in sorted(hf["jobs"]):
        (n, a), (_, b) = hf["jobs"][job], vl["jobs"][job]
        print(f"| {job} | {n} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    pa = sum(t for _, t in hf["jobs"].values())
    pb = sum(t for _, t in vl["jobs"].values())
    same = sum(hf["preds"][k] == vl["preds"].get(k) for k in hf["preds"])
    print(f"\nstart-up included (command wall): hf {hf['wall']:.1f} s, vllm {vl['wall']:.1f} s, "
          f"vllm / hf speed {hf['wall'] / vl['wall']:.2f}x")
    print(f"start-up excluded (sum of job predict times): hf {pa:.1f} s, vllm {pb:.1f} s, "
          f"vllm / hf speed {pa / pb:.2f}x")
    print(f"identical greedy answers: {same}/{len(hf['preds'])}")


if __name__ == "__main__":
    main()
