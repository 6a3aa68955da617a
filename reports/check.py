"""`longrecipe check`: the CI regression gate for long-context scores.

Exit 0 when no tracked score got worse by more than the tolerance (points; a drop, or a rise for perplexities and
bits per byte), 1 with a readable table of what dropped (or disappeared), 2 for unusable input. Tracked by default:
what each suite's view gates (tasks/views.py: RULER per-length means and summary, NIAH per-length means over
depths, LongBench category averages, every row of passkey, perplexity, LongBench-E/v2, general and any new suite);
`--per-task` tracks every row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from longrecipe.base.io import write_json, write_text
from longrecipe.base.schema import RAW_METRICS
from longrecipe.reports import settings
from longrecipe.reports.load import (
    ReportError,
    curve_as_results,
    curve_path,
    curve_settings,
    read_curve,
    read_results,
)
from longrecipe.reports.tables import suites, view

KEY = ["suite", "task", "context_length", "depth", "metric"]


def tracked(data: dict, per_task: bool) -> pd.DataFrame:
    """The rows the gate compares: every row with --per-task; else, per suite, the rows its view gates (RULER: its
    per-length means and summary; NIAH: means over depths; LongBench: category averages; other suites: every row,
    so a new suite is gated without naming it here)."""
    df = pd.DataFrame(data["scores"])
    if df.empty:
        return pd.DataFrame(columns=KEY + ["value"])
    if not per_task:
        parts = []
        for suite in suites(df):
            v, rows = view(suite), df[df.suite == suite]
            rows = rows[rows.task.isin(v.gate_tasks)] if v.gate_tasks else rows
            rows = rows[rows.metric.isin(v.gate_metrics)] if v.gate_metrics else rows
            rows = rows[~rows.metric.isin(v.ungated_metrics)]
            if v.gate == "depth_means":
                rows = rows.groupby(["suite", "task", "context_length", "metric"], dropna=False,
                                    as_index=False)["value"].mean()
                rows["depth"] = None
            parts.append(rows)
        df = pd.concat(parts, ignore_index=True)
    return df[KEY + ["value"]].astype({"context_length": "object", "depth": "object"})


def compare(baseline: dict, run: dict, tolerance: float, per_task: bool, any_change: bool = False) -> pd.DataFrame:
    """Rows of tracked scores that dropped by more than `tolerance` points (`any_change`: moved either way) or are
    missing in the run."""
    b, r = tracked(baseline, per_task), tracked(run, per_task)
    norm = lambda d: d.assign(context_length=d.context_length.map(lambda v: None if pd.isna(v) else int(v)),  # noqa
                              depth=d.depth.map(lambda v: None if v is None or pd.isna(v) else float(v)))
    b, r = (norm(d).astype({k: object for k in KEY}) for d in (b, r))  # one key dtype on both sides
    merged = b.merge(r, on=KEY, how="left", suffixes=("_baseline", "_run"))
    # rounded: 64.9 -> 63.9 is a drop of exactly 1.0 point, as 40.0 -> 39.0 is (raw floats differ by 1e-14)
    merged["delta"] = (merged.value_run.astype(float) - merged.value_baseline.astype(float)).round(9)
    worse = merged.delta.where(~merged.metric.isin(RAW_METRICS), -merged.delta)  # perplexities: a rise is worse
    moved = worse.abs() > tolerance if any_change else worse < -tolerance
    bad = merged[merged.value_run.isna() | moved]
    return bad.sort_values(KEY, key=lambda s: s.astype(str)).reset_index(drop=True)


def render(bad: pd.DataFrame) -> str:
    lines = [f"{'suite':8} {'task':18} {'length':>7} {'depth':>6} {'metric':18} {'baseline':>9} {'run':>9} "
             f"{'delta':>8}"]
    for _, x in bad.iterrows():
        run = "missing" if pd.isna(x.value_run) else f"{x.value_run:.2f}"
        delta = "" if pd.isna(x.delta) else f"{x.delta:+.2f}"
        length = "" if x.context_length is None or pd.isna(x.context_length) else str(int(x.context_length))
        depth = "" if x.depth is None or pd.isna(x.depth) else f"{float(x.depth):g}"
        lines.append(f"{x.suite:8} {x.task:18} {length:>7} {depth:>6} {x.metric:18} {x.value_baseline:9.2f} "
                     f"{run:>9} {delta:>8}")
    return "\n".join(lines)


def verdict(bad: pd.DataFrame, n: int, tolerance: float, any_change: bool) -> str:
    """The closing line a CI log ends with: why the gate is red (or that it is green) in one sentence."""
    if bad.empty:
        return f"check: ok: {n} tracked rows within {tolerance:g}"
    missing = int(bad.value_run.isna().sum())
    how = "moved" if any_change else "dropped"
    return (f"check: FAIL: {missing} tracked row{'s' * (missing != 1)} missing, {len(bad) - missing} {how} by more "
            f"than {tolerance:g} (of {n})")


def as_json(bad: pd.DataFrame, n: int, tolerance: float, any_change: bool) -> dict:
    """`--format json`: the verdict and every failing row, for CI systems that parse the gate's output."""
    def num(v: object) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    rows = [{"suite": x.suite, "task": x.task, "context_length": None if num(x.context_length) is None
             else int(x.context_length), "depth": num(x.depth), "metric": x.metric,
             "baseline": num(x.value_baseline), "run": num(x.value_run), "delta": num(x.delta),
             "missing": bool(pd.isna(x.value_run))} for _, x in bad.iterrows()]
    return {"ok": bad.empty, "tracked": n, "failed": len(bad), "missing": sum(r["missing"] for r in rows),
            "tolerance": tolerance, "any_change": any_change, "verdict": verdict(bad, n, tolerance, any_change),
            "rows": rows}


def run_check(baseline: str | Path, run: str | Path, tolerance: float = 1.0, per_task: bool = False,
              update: bool = False, log=print, any_change: bool = False, fmt: str = "table",
              say=lambda line: print(line, file=sys.stderr), allow_setting_change: bool = False,
              curve: bool = False) -> int:
    """0: green, 1: a tracked row dropped (or moved) past the tolerance or is missing; the verdict line goes to
    `say` (stderr) in both cases, the table or the JSON document to `log` (stdout). `curve`: gate the scores of
    training (train_eval.jsonl) point by point, each step against the baseline's same step (every row tracked; a
    step the run has not reached is missing)."""
    if tolerance < 0:
        raise ReportError("--tolerance must be >= 0")
    if curve:
        if update:
            read_curve(run)  # an empty or broken curve is refused before the baseline is touched
            curve_path(baseline).parent.mkdir(parents=True, exist_ok=True)
            write_text(curve_path(baseline), curve_path(run).read_text())
            log(f"baseline {curve_path(baseline)} updated from {curve_path(run)}")
            return 0
        current, base = curve_as_results(run), curve_as_results(baseline)
        made = {"baseline": curve_settings(baseline), "run": curve_settings(run)}
        changed = [f"{key}: baseline {made['baseline'][key]!r}, run {made['run'][key]!r}" for key in made["run"]
                   if made["baseline"] and made["baseline"].get(key) != made["run"][key]]
        if changed and not allow_setting_change:
            raise ReportError(f"the run's curve and the baseline's were made with other settings: {changed[0]} "
                              f"(--allow-setting-change compares them anyway)")
        return _gate(base, current, baseline, tolerance, True, any_change, fmt, log, say, changed)
    current = read_results(run)
    if update:
        write_json(baseline, current)
        log(f"baseline {baseline} updated from {run}")
        return 0
    base = read_results(baseline)
    changed = settings.differences({"baseline": base.get("manifest") or {}, "run": current.get("manifest") or {}})
    if changed and not allow_setting_change:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ReportError(f"the run and the baseline were made with other settings: {changed[0]}{more}; a gate "
                          f"across them would report the setting as the model (--allow-setting-change compares "
                          f"them anyway)")
    return _gate(base, current, baseline, tolerance, per_task, any_change, fmt, log, say, changed)


def _gate(base: dict, current: dict, baseline: str | Path, tolerance: float, per_task: bool, any_change: bool,
          fmt: str, log, say, changed: list[str]) -> int:
    n = len(tracked(base, per_task))
    if n == 0:
        raise ReportError(f"{baseline} has no tracked scores: there is nothing to gate against")
    for line in changed:
        say(f"warning: {line}")
    bad = compare(base, current, tolerance, per_task, any_change)
    how = "moved" if any_change else "got worse"
    if fmt == "json":
        log(json.dumps(as_json(bad, n, tolerance, any_change), indent=2))
    elif bad.empty:
        log(f"ok: {n} tracked scores, none {how} by more than {tolerance} points")
    else:
        log(f"{len(bad)} of {n} tracked scores {how} by more than {tolerance} points (or are missing):")
        log(render(bad))
    say(verdict(bad, n, tolerance, any_change))
    return 0 if bad.empty else 1
