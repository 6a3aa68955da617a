"""Cross-check against the reference harness: lm-eval 0.4.13's own `ruler` tasks and its `hf` model on
SmolLM2-135M-Instruct, beside the committed longrecipe report (`docs/smollm2/scores.csv`, its hf backend), on
RULER's 11 non-QA tasks at the same lengths and sample counts, chat template on for both. Writes
docs/smollm2/lm_eval_crosscheck.md.

    python benchmarks/smollm2_report.py --lengths 1024,2048,4096 --samples 5 --vllm-lengths 1024 \
        --essay-dir ../shared/data/paul_graham_essays          # ours (resumes; already committed)
    python benchmarks/lm_eval_ruler_crosscheck.py --lengths 1024,2048,4096 --samples 5 \
        --essay-dir ../shared/data/paul_graham_essays

Each run's lm-eval scores are merged into docs/smollm2/lm_eval_scores.json (per length), and the table covers every
length stored there: `--lengths 4096` on another day adds that column to the earlier ones.

lm-eval runs offline with only its two downloads replaced (`_lm_eval_offline.py`: its essay haystack pointed at the
same local essays, its punkt splitter at ours). It draws its own samples (its own random streams), so the two sides
score different samples of the same task definitions: the comparison is of per-task scores, not per sample. lm-eval
builds 500 samples per length and `limit` keeps the first N; each length runs separately so that every length gets
N, on one loaded model.

    python benchmarks/lm_eval_ruler_crosscheck.py --same-prompts niah_single_3@1024,vt@1024 --samples 10 \
        --essay-dir ../shared/data/paul_graham_essays

`--same-prompts` takes the other half of the question: lm-eval runs each named cell alone (its samples logged), and
our generation (longrecipe.base.inference.greedy_generate, the hf backend's) and scorer run on lm-eval's exact
prompt strings: per-sample identical answers and both scores, so a score gap is split into "the harnesses answer
and score the same prompt differently" and "they build different prompts". Written to
docs/smollm2/lm_eval_same_prompts.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()
import _lm_eval_offline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "smollm2"
TASKS = _lm_eval_offline.RULER_TASKS


def ours(lengths: list[int], samples: int) -> dict[tuple[str, int], float]:
    """The committed report's hf scores; a missing cell means the report must be extended first."""
    got = {}
    with open(DOCS / "scores.csv") as f:
        for r in csv.DictReader(f):
            if r["run"] == "smollm2-hf" and r["suite"] == "ruler" and r["task"] in TASKS:
                n = int(float(r["context_length"]))
                if n in lengths:
                    if int(r["n"]) != samples:
                        raise SystemExit(f"the report has {r['n']} samples for {r['task']}@{n}, not {samples}")
                    got[r["task"], n] = float(r["value"])
    return got


def reference(lengths: list[int], samples: int, essay_dir: str, batch_size: int = 8) -> tuple[dict, dict]:
    _lm_eval_offline.patch(essay_dir)
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from longrecipe.base import model_dirs

    model = str(model_dirs.resolve("smollm2-135m"))
    lm = HFLM(pretrained=model, max_length=max(lengths) + 256, dtype="float32", device="cpu", batch_size=batch_size)
    scores, seconds = {}, {}
    for n in lengths:
        t0 = time.time()
        res = lm_eval.simple_evaluate(model=lm, tasks=list(TASKS.values()),
                                      metadata={"max_seq_lengths": [n], "tokenizer": model}, limit=samples,
                                      apply_chat_template=True, log_samples=False)
        seconds[n] = time.time() - t0
        for ours_name, t in TASKS.items():
            scores[ours_name, n] = _lm_eval_offline.scores_by_length(res["results"], t).get(n, math.nan)
        print(json.dumps({"length": n, "seconds": seconds[n],
                          "scores": {t: scores[t, n] for t in TASKS}}), flush=True)
    return scores, seconds


def compare_prompt(task: str, length: int, essay_dir: str) -> None:
    """Token count and layout of one sample of `task` from each side, with this model's tokenizer."""
    import contextlib
    import importlib
    import io

    _lm_eval_offline.patch(essay_dir)
    from transformers import AutoTokenizer

    from longrecipe.base import model_dirs
    from longrecipe.tasks import ruler

    tok = AutoTokenizer.from_pretrained(model_dirs.resolve("smollm2-135m"))
    mine = ruler.generate(task, tok, length, 1, seed=42, essay_dir=essay_dir)[0]["input"]
    utils = importlib.import_module(f"lm_eval.tasks.ruler.{task}_utils")
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = utils.get_dataset(tok, seq=length)[0]["input"]
    for side, text in (("longrecipe", mine), ("lm-eval", theirs)):
        print(f"{side}: {len(tok(text).input_ids)} tokens for {task}@{length}; opening: {text[:400]!r}")


def same_prompts(cells: list[tuple[str, int]], samples: int, essay_dir: str) -> None:
    """lm-eval's prompts and answers for each cell, then ours on the same prompt strings (see the docstring)."""
    _lm_eval_offline.patch(essay_dir)
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from longrecipe.base import model_dirs
    from longrecipe.base.inference import greedy_generate
    from longrecipe.tasks import ruler

    path = str(model_dirs.resolve("smollm2-135m"))
    lm = HFLM(pretrained=path, max_length=max(n for _, n in cells) + 256, dtype="float32", device="cpu", batch_size=8)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    lines = [f"lm-eval 0.4.13 run on one cell at a time ({samples} samples, chat template on, its samples logged); "
             "longrecipe's generation and scorer on lm-eval's exact prompt strings; greedy, fp32, CPU", "",
             "| task@length | prompt tokens (min-max) | identical answers | lm-eval's score | longrecipe on the same "
             "prompts | longrecipe report (own samples) |", "|---|---|---|---|---|---|"]
    report = ours(sorted({n for _, n in cells}), 5)
    for task, n in cells:
        res = lm_eval.simple_evaluate(model=lm, tasks=[TASKS[task]], limit=samples, apply_chat_template=True,
                                      metadata={"max_seq_lengths": [n], "tokenizer": path}, log_samples=True)
        logged = sorted(res["samples"][TASKS[task]], key=lambda r: r["doc_id"])
        prompts = [r["arguments"][0][0] for r in logged]
        theirs = [r["resps"][0][0] for r in logged]
        refs = [list(r["doc"]["outputs"]) for r in logged]
        mine = greedy_generate(model, tok, prompts, ruler.TOKENS_TO_GENERATE[task], 8)
        same = sum(a.strip() == b.strip() for a, b in zip(theirs, mine))
        sizes = [len(tok(x).input_ids) for x in prompts]
        score_theirs = _lm_eval_offline.scores_by_length(res["results"], TASKS[task]).get(n, math.nan)
        row = (f"| {task}@{n} | {min(sizes)}-{max(sizes)} | {same} of {len(prompts)} | {score_theirs:.1f} | "
               f"{ruler.score(task, mine, refs):.1f} | {report.get((task, n), math.nan):.1f} (5) |")
        print(row, flush=True)
        lines.append(row)
    (DOCS / "lm_eval_same_prompts.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="1024,2048,4096")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"))
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval hf rows per generate call (1 at 4k+ on "
                   "CPU: a padded batch's mask makes SDPA compute the whole square, RESULTS.md)")
    p.add_argument("--compare-prompt", metavar="TASK@LENGTH", help="only print one sample's prompt from each side "
                   "(tasks with a get_dataset(tokenizer, seq=...) in lm-eval: vt, cwe)")
    p.add_argument("--same-prompts", metavar="TASK@LENGTH,...", help="run these cells on lm-eval's exact prompts "
                   "through both harnesses (per-sample agreement)")
    args = p.parse_args()
    if not args.essay_dir:
        raise SystemExit("--essay-dir (or LONGRECIPE_ESSAYS_DIR) is needed: lm-eval's essay haystack is a download")
    if args.compare_prompt:
        task, length = args.compare_prompt.split("@")
        compare_prompt(task, int(length), args.essay_dir)
        return
    if args.same_prompts:
        cells = [(c.split("@")[0], int(c.split("@")[1])) for c in args.same_prompts.split(",")]
        unknown = [t for t, _ in cells if t not in TASKS]
        if unknown:
            raise SystemExit(f"--same-prompts: unknown task(s) {unknown} (choose from {', '.join(TASKS)})")
        same_prompts(cells, args.samples, args.essay_dir)
        return
    lengths = [int(x) for x in args.lengths.split(",")]
    ours(lengths, args.samples)  # fail before the long run when the report lacks a cell
    b, secs = reference(lengths, args.samples, args.essay_dir, args.batch_size)
    stored = store_scores(b, secs, args.samples, args.batch_size)
    every = sorted(stored["seconds"], key=int)
    b = {(t, int(n)): v for n, row in stored["scores"].items() for t, v in row.items()}
    secs = {int(n): (stored["seconds"][n], stored["batch_size"].get(n, 8)) for n in every}
    write_table(ours([int(n) for n in every], args.samples), b, secs, [int(n) for n in every], args.samples)


def store_scores(scores: dict, seconds: dict, samples: int, batch_size: int = 8) -> dict:
    """Merge this run's lm-eval scores into docs/smollm2/lm_eval_scores.json, so that a length run on another day
    (lm-eval at 4k takes the better part of an hour here) adds a column instead of replacing the table; written
    atomically."""
    path = DOCS / "lm_eval_scores.json"
    stored = json.loads(path.read_text()) if path.is_file() else {"samples": samples, "scores": {}, "seconds": {}}
    if stored["samples"] != samples:
        raise SystemExit(f"{path} holds {stored['samples']}-sample scores; this run has {samples}")
    stored.setdefault("batch_size", {})  # lm-eval's rows per generate call (runs before it had one were batch 8)
    for n in sorted({n for _, n in scores}):
        stored["scores"][str(n)] = {t: scores[t, n] for t in TASKS}
        stored["seconds"][str(n)] = round(seconds[n], 1)
        stored["batch_size"][str(n)] = batch_size
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return stored


def write_table(a: dict, b: dict, secs: dict, lengths: list[int], samples: int) -> None:
    """`secs`: length -> (lm-eval's wall seconds, its batch size)."""
    head = " | ".join(f"{n} longrecipe / lm-eval" for n in lengths)
    lines = [f"{samples} samples per (task, length), chat template on, greedy, hf; longrecipe = the committed "
             f"report (docs/smollm2/scores.csv); lm-eval 0.4.13 wall s per length (its batch size): "
             + ", ".join(f"{n}: {secs[n][0]:.0f} ({secs[n][1]})" for n in lengths), "", f"| task | {head} |",
             "|---|" + "---|" * len(lengths)]
    for t in TASKS:
        lines.append(f"| {t} | " + " | ".join(f"{a.get((t, n), math.nan):.1f} / {b[t, n]:.1f}" for n in lengths)
                     + " |")
    mean = [(sum(a[t, n] for t in TASKS) / len(TASKS), sum(b[t, n] for t in TASKS) / len(TASKS)) for n in lengths]
    lines.append("| **mean (11 tasks)** | " + " | ".join(f"**{x:.1f} / {y:.1f}**" for x, y in mean) + " |")
    (DOCS / "lm_eval_crosscheck.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
