"""Exports other tools read: lm-eval's results JSON layout, and RULER's `summary.csv` per context length.

lm-eval: `{"results": {task: {"alias": task, "<metric>,none": value}}, "versions", "n-samples", "config"}` with
values as lm-eval reports them (fractions for accuracy-like metrics, perplexities as they are). A row with a
context length becomes `"<length>,none"`, as lm-eval's own `ruler` tasks name their per-length metrics; NIAH rows
are averaged over depths. RULER: `scripts/eval/evaluate.py` writes one table per length whose rows are Tasks, Score
(0-100) and Nulls (`empty/n`), through pandas with its default numeric header row; ours is the same file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from longrecipe.base.io import write_json, write_text
from longrecipe.base.schema import RAW_METRICS
from longrecipe.reports.tables import view

SUMMARY_TASKS = ("average", "summary")  # rows over a suite's tasks (RULER's per-length means, the leaderboard)


def to_lm_eval(data: dict) -> dict:
    """One results file (schema v1, as loaded) in lm-eval's results layout."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    versions: dict[str, object] = {}
    for r in data["scores"]:
        if r["task"] in SUMMARY_TASKS:
            continue
        task = r["task"] if view(r["suite"]).lm_eval_names == "task" else f"{r['suite']}_{r['task']}"
        key = f"{r['context_length']},none" if r["context_length"] is not None else f"{r['metric']},none"
        scale = 1.0 if r["metric"] in RAW_METRICS else 0.01
        groups[(task, key)].append(scale * float(r["value"]))
        counts[task] = max(counts.get(task, 0), int(r.get("n") or 0))
        versions[task] = r.get("task_version", 1)
    results: dict[str, dict] = {}
    for (task, key), values in groups.items():
        results.setdefault(task, {"alias": task})[key] = sum(values) / len(values)
    return {"results": results, "versions": versions,
            "n-samples": {t: {"original": n, "effective": n} for t, n in counts.items()},
            "config": {"model": data["model"]["path"], "backend": data["backend"],
                       "longrecipe_run": data["run"]["id"]}}


def ruler_summaries(data: dict) -> dict[int, str]:
    """length -> RULER's summary.csv text for that length (tasks in the order they were scored), from the rows of
    every suite whose view asks for it (RULER's)."""
    by_len: dict[int, list[dict]] = defaultdict(list)
    for r in data["scores"]:
        if view(r["suite"]).summary_csv and r["task"] not in SUMMARY_TASKS and r["context_length"] is not None:
            by_len[int(r["context_length"])].append(r)
    out = {}
    for length, rows in sorted(by_len.items()):
        table = pd.DataFrame([["Tasks"] + [r["task"] for r in rows], ["Score"] + [r["value"] for r in rows],
                              ["Nulls"] + [f"{r.get('n_null', 0)}/{r['n']}" for r in rows]])
        out[length] = table.to_csv(index=False)
    return out


def write_exports(runs: dict[str, dict], out: Path, lm_eval: bool) -> list[Path]:
    """RULER summaries always; the lm-eval layout when asked. `runs`: label -> loaded results."""
    written = []
    for label, data in runs.items():
        for length, text in ruler_summaries(data).items():
            path = out / "ruler_summary" / label / str(length) / "summary.csv"
            write_text(path, text)
            written.append(path)
        if lm_eval:
            path = out / "lm_eval" / f"{label}.json"
            write_json(path, to_lm_eval(data))
            written.append(path)
    return written
