"""A whole RULER evaluation: `longrecipe eval` against lm-eval 0.4.13 running its own `ruler` tasks (#19 item 8).

    python benchmarks/ruler_eval_vs_lm_eval.py [--lengths 512,1024,2048] [--samples 50] [--batch-size 8] \
        --essay-dir ../shared/data/paul_graham_essays

Both sides: RULER's 11 non-QA tasks (8 NIAH variants, vt, cwe, fwe), the same model and tokenizer (the embedded
tiny model, its window 256, so `--allow-extrapolation` for ours and `max_length` for lm-eval's hf model), the same
lengths and samples per (task, length), greedy, hf backend, fp32 on CPU, the same batch size, each in a fresh
process. Wall time runs from the command's start until its results file exists: imports, model load, sample
generation, prediction and scoring. lm-eval's essay haystack (`datasets.load_dataset("baber/paul_graham_essays")`,
a hub download) is pointed at the same local essays, and since NLTK's punkt model cannot be downloaded here its
sentence splitter is replaced by ours (only ever faster for it). lm-eval builds 500 samples per (task, length), as
it always does, and `samples=` picks the first N of each length, so one command covers every length; that is its
cost as a user meets it. With the tiny tokenizer at 512 and 1024 two of its generators fail: vt never returns (a
redraw loop without a floor when the smallest chain does not fit) and cwe builds 500 samples with no answer words
(its scorer then divides by zero), so those jobs are not asked of it (`--lm-eval-skip`);
its tasks are run in one process on one loaded model, one `simple_evaluate` per set of lengths. Goal: ours >= 3x faster.
Scores are printed side by side; the two harnesses draw
different random samples, so they compare per task, not per sample.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()
import _lm_eval_offline  # noqa: E402

THEIRS = _lm_eval_offline.RULER_TASKS
OURS = tuple(THEIRS)
PER_LENGTH = 500  # lm-eval's RULER generators build this many samples per length (hard-coded there)


def lmeval_child(args: argparse.Namespace) -> None:
    """lm-eval's own pipeline, with only its two downloads replaced by local files."""
    _lm_eval_offline.patch(args.essay_dir)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from longrecipe.base import model_dirs

    model = str(model_dirs.resolve("tiny"))
    lengths = [int(x) for x in args.lengths.split(",")]
    model_s = [0.0]
    real_generate = HFLM.generate_until

    def generate_until(self, *a, **k):  # the model's share of the wall time: prompts in, greedy answers out
        t0 = time.time()
        try:
            return real_generate(self, *a, **k)
        finally:
            model_s[0] += time.time() - t0

    HFLM.generate_until = generate_until
    lm = HFLM(pretrained=model, max_length=max(lengths), dtype="float32", device="cpu", batch_size=args.batch_size)
    skip = {tuple(x.split("@")) for x in args.lm_eval_skip.split(",") if x}
    groups: dict[tuple[int, ...], list[str]] = {}  # lengths -> tasks, one simple_evaluate per distinct set
    for t in OURS:
        keep = tuple(n for n in lengths if (t, str(n)) not in skip)
        if keep:
            groups.setdefault(keep, []).append(THEIRS[t])
    out: dict = {"results": {}, "counts": {}, "jobs": []}
    for keep, tasks in groups.items():
        pick = [i * PER_LENGTH + j for i in range(len(keep)) for j in range(args.samples)]
        res = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, metadata={"max_seq_lengths": list(keep), "tokenizer": model},
            samples={t: pick for t in tasks}, log_samples=True)
        for t in tasks:
            out["results"][t] = _lm_eval_offline.scores_by_length(res["results"], t)
            counts = out["counts"].setdefault(t, {})
            for r in res["samples"][t]:
                n = str(r["doc"]["max_length"])
                counts[n] = counts.get(n, 0) + 1
            out["jobs"] += [f"{t}@{n}" for n in keep]
    out["model_s"] = model_s[0]
    Path(args.out).write_text(json.dumps(out))


def ours(args: argparse.Namespace, out: Path) -> tuple[dict, float]:
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "eval", "--model", "tiny", "--suite", "ruler",
           "--ruler-tasks", ",".join(OURS), "--lengths", args.lengths, "--samples", str(args.samples),
           "--batch-size", str(args.batch_size), "--dtype", "float32", "--allow-extrapolation", "--out", str(out)]
    if args.essay_dir:
        cmd += ["--essay-dir", args.essay_dir]
    t0 = time.time()
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    wall = time.time() - t0
    model_s = sum(float(m) for m in re.findall(r"samples in ([\d.]+)s", proc.stdout))  # the runner's job logs
    rows = json.loads((out / "results.json").read_text())["scores"]
    return {(r["task"], int(r["context_length"])): r["value"] for r in rows if r["task"] in OURS}, wall, model_s


def theirs(args: argparse.Namespace, out: Path) -> tuple[dict, float]:
    cmd = [sys.executable, __file__, "--child", "--lengths", args.lengths, "--samples", str(args.samples),
           "--batch-size", str(args.batch_size), "--essay-dir", args.essay_dir, "--out", str(out),
           "--lm-eval-skip", args.lm_eval_skip]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    data = json.loads(out.read_text())
    for t, per in data["counts"].items():
        if any(c != args.samples for c in per.values()):
            raise SystemExit(f"lm-eval scored {per} samples per length for {t}, not {args.samples} each")
    scores = {}
    for ours_name, t in THEIRS.items():
        for length, value in data["results"].get(t, {}).items():
            scores[ours_name, int(length)] = value
    return scores, wall, data["model_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="512,1024,2048")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    p.add_argument("--lm-eval-skip", default="vt@512,vt@1024,cwe@512,cwe@1024",
                   help="task@length jobs lm-eval is not asked for: with the tiny tokenizer at 512 and 1024 its "
                        "vt generator never returns and its cwe samples have no answers (scoring divides by 0)")
    p.add_argument("--child", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if not args.essay_dir:
        raise SystemExit("--essay-dir (or LONGRECIPE_ESSAYS_DIR) is needed: lm-eval's essay haystack is a download")
    if args.child:
        lmeval_child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="ruler-eval-bench-"))
    a, ta, ma = ours(args, work / "ours")
    print(f"longrecipe eval: {ta:.1f} s", flush=True)
    b, tb, mb = theirs(args, work / "lm_eval.json")
    print(f"lm-eval 0.4.13: {tb:.1f} s", flush=True)
    lengths = [int(x) for x in args.lengths.split(",")]
    only_a = sorted(f"{t}@{n}" for t, n in set(a) - set(b))
    only_b = sorted(f"{t}@{n}" for t, n in set(b) - set(a))
    print(f"jobs: longrecipe {len(a)}, lm-eval {len(b)}; only longrecipe: {only_a or '-'}; only lm-eval: "
          f"{only_b or '-'} (longrecipe skips a job whose smallest prompt does not fit, with a note)")
    print(f"\n| task | {' | '.join(f'{n} ours / lm-eval' for n in lengths)} |")
    print("|---|" + "---|" * len(lengths))
    for t in OURS:
        cells = [f"{a.get((t, n), float('nan')):.1f} / {b.get((t, n), float('nan')):.1f}" for n in lengths]
        print(f"| {t} | {' | '.join(cells)} |")
    print(f"\nwall s (start -> results file): longrecipe {ta:.1f}, lm-eval {tb:.1f}; "
          f"speed-up {tb / ta:.2f}x (goal >= 3x); {args.samples} samples x {len(OURS)} tasks x lengths "
          f"{args.lengths}, batch {args.batch_size}")
    print(f"of which the model's greedy generation: longrecipe {ma:.1f} s, lm-eval {mb:.1f} s; the rest (imports, "
          f"model load, sample generation, scoring): longrecipe {ta - ma:.1f} s, lm-eval {tb - mb:.1f} s, "
          f"{(tb - mb) / max(ta - ma, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
