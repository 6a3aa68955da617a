"""`longrecipe check`: the CI regression gate for long-context scores.

Exit 0 when no tracked score dropped by more than the tolerance (points), 1 with a readable table of what dropped
(or disappeared), 2 for unusable input. Tracked by default: the suite-level scores (RULER per-length means and
summary, NIAH per-length means, passkey, general tasks); `--per-task` tracks every row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from longrecipe.reports.load import ReportError, read_results

KEY = ["suite", "task", "context_length", "depth", "metric"]


def tracked(data: dict, per_task: bool) -> pd.DataFrame:
    df = pd.DataFrame(data["scores"])
    if df.empty:
        return df
    if not per_task:
        niah = df[df.suite == "niah"].groupby(["suite", "task", "context_length", "metric"], dropna=False,
                                               as_index=False)["value"].mean()
        niah["depth"] = None
        keep = df[((df.suite == "ruler") & df.task.isin(["average", "summary"])) | df.suite.isin(["passkey",
                                                                                                    "general"])]
        df = pd.concat([keep, niah], ignore_index=True)
    df = df[df.metric != "effective_length"] if not per_task else df
    return df[KEY + ["value"]].astype({"context_length": "object", "depth": "object"})


def compare(baseline: dict, run: dict, tolerance: float, per_task: bool) -> pd.DataFrame:
    """Rows of tracked scores that dropped by more than `tolerance` points or are missing in the run."""
    b, r = tracked(baseline, per_task), tracked(run, per_task)
    norm = lambda d: d.assign(context_length=d.context_length.map(lambda v: None if pd.isna(v) else int(v)),  # noqa
                              depth=d.depth.map(lambda v: None if v is None or pd.isna(v) else float(v)))
    b, r = norm(b), norm(r)
    merged = b.merge(r, on=KEY, how="left", suffixes=("_baseline", "_run"))
    merged["delta"] = merged.value_run - merged.value_baseline
    bad = merged[merged.value_run.isna() | (merged.delta < -tolerance)]
    return bad.sort_values(KEY, key=lambda s: s.astype(str)).reset_index(drop=True)


def render(bad: pd.DataFrame) -> str:
    lines = [f"{'suite':8} {'task':18} {'length':>7} {'depth':>6} {'metric':18} {'baseline':>9} {'run':>9} "
             f"{'delta':>8}"]
    for _, x in bad.iterrows():
        run = "missing" if pd.isna(x.value_run) else f"{x.value_run:.2f}"
        delta = "" if pd.isna(x.delta) else f"{x.delta:+.2f}"
        length = "" if x.context_length is None else str(x.context_length)
        depth = "" if x.depth is None else f"{x.depth:g}"
        lines.append(f"{x.suite:8} {x.task:18} {length:>7} {depth:>6} {x.metric:18} {x.value_baseline:9.2f} "
                     f"{run:>9} {delta:>8}")
    return "\n".join(lines)


def run_check(baseline: str | Path, run: str | Path, tolerance: float = 1.0, per_task: bool = False,
              update: bool = False, log=print) -> int:
    if tolerance < 0:
        raise ReportError("--tolerance must be >= 0")
    current = read_results(run)
    if update:
        from longrecipe.io import write_json

        write_json(baseline, current)
        log(f"baseline {baseline} updated from {run}")
        return 0
    base = read_results(baseline)
    bad = compare(base, current, tolerance, per_task)
    n = len(tracked(base, per_task))
    if bad.empty:
        log(f"ok: {n} tracked scores, none dropped by more than {tolerance} points")
        return 0
    log(f"{len(bad)} of {n} tracked scores dropped by more than {tolerance} points (or are missing):")
    log(render(bad))
    return 1
