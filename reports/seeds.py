"""A report over several seeds of the same study: every table as mean +/- std, error bars, and which differences
between runs are real.

Why: one seed of a toy study is one draw of its training data and evaluation samples; two methods whose scores
differ by less than the seeds' spread (or than the binomial noise of the samples behind each score) are not
different. The rule used here (stated in the report): a difference between two runs is called one only when it
exceeds both 2x their pooled seed std, sqrt((s_a^2 + s_b^2) / 2), and 2 binomial standard errors of the
difference, sqrt(p_a (100 - p_a) / N_a + p_b (100 - p_b) / N_b) with N the samples behind each mean (all seeds).

Input: one folder per seed, each holding one folder per run with its results.json (the layout `longrecipe demo
--seeds N` writes under report/seeds/, small enough to commit), so a report can be rebuilt without re-training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from longrecipe.base.io import write_text
from longrecipe.reports import load, plots, tables
from longrecipe.reports.record import study_record

RULE = ("a difference is called one only when it exceeds both 2x the pooled seed std and 2 binomial standard "
        "errors of the difference (samples of all seeds)")


def seed_runs(seed_dirs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """seed name -> its run folders (those holding results.json), in name order."""
    out = {}
    for d in seed_dirs:
        runs = sorted(p.parent for p in Path(d).glob("*/results.json"))
        if not runs:
            raise load.ReportError(f"{d}: no run folders with results.json")
        out[Path(d).name] = runs
    if len({tuple(r.name for r in runs) for runs in out.values()}) > 1:
        raise load.ReportError("the seed folders hold different runs; every seed needs the same ones")
    return out


def frame(seed_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Every score row of every seed's runs, with a `seed` column."""
    frames = [load.frame(runs).assign(seed=seed) for seed, runs in seed_runs(seed_dirs).items()]
    return pd.concat(frames, ignore_index=True)


def per_seed(df: pd.DataFrame, build: Callable[[pd.DataFrame], pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, std) over seeds of a table `build` makes from one seed's rows (std NaN with one seed)."""
    return mean_std([build(g.drop(columns="seed")) for _, g in df.groupby("seed", sort=True)])


def mean_std(tabs: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, std) cell by cell of tables with the same rows and columns, one per seed, in the first one's row
    order (empty tables are skipped; std NaN with one table)."""
    tabs = [t.apply(pd.to_numeric, errors="coerce") for t in tabs if not t.empty]
    if not tabs:
        return pd.DataFrame(), pd.DataFrame()
    stacked = pd.concat(tabs, keys=range(len(tabs)))
    mean = stacked.groupby(level=1, sort=False).mean()
    std = stacked.groupby(level=1, sort=False).std(ddof=1)
    mean.index.name = std.index.name = tabs[0].index.name
    return mean.reindex(tabs[0].index), std.reindex(tabs[0].index)


def _pm(m: float, s: float) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return tables._fmt(float(m)) + ("" if s is None or math.isnan(s) else f" ± {tables._fmt(float(s))}")


def write_pm(mean: pd.DataFrame, std: pd.DataFrame, out: Path, name: str, caption: str, seeds: int,
             lower: bool = False) -> list[Path]:
    """name.md and name.tex with "mean ± std" cells (the best mean in bold: the smallest where `lower`), name.csv
    with mean and std columns."""
    bold = tables._bold_best(mean, lambda s: f"**{s}**", lower)
    cells = mean.copy().astype(object)
    for col in mean.columns:
        cells[col] = [f"**{_pm(m, s)}**" if str(b).startswith("**") else _pm(m, s)
                      for m, s, b in zip(mean[col], std[col], bold[col])]
    head = [mean.index.name or ""] + [str(c) for c in mean.columns]
    plural = "s" if seeds > 1 else ""
    md = [f"Mean ± std over {seeds} seed{plural}.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join([str(i)] + [str(v) for v in row]) + " |" for i, row in cells.iterrows()]
    paths = [out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"]
    write_text(paths[0], "\n".join(md) + "\n")
    write_text(paths[1], tables.to_latex(cells.replace(r"\*\*(.*)\*\*", r"\1", regex=True), caption, bold=False))
    both = pd.concat([mean, std.add_suffix(" std")], axis=1)
    write_text(paths[2], both[[c for pair in zip(mean.columns, std.add_suffix(" std").columns) for c in pair]].to_csv())
    return paths


def cell_samples(df: pd.DataFrame, suite: str) -> pd.DataFrame:
    """Samples behind each (run, context length) mean of a suite, over all seeds (sum of the rows' n)."""
    r = df[(df.suite == suite) & df.context_length.notna()]
    return r.pivot_table(index="run", columns="context_length", values="n", aggfunc="sum")


def _verdict(real: bool, pooled: float) -> str:
    """Why a third verdict: with one seed there is no seed std, so the rule cannot call anything noise either."""
    return "difference" if real else "not judged (1 seed)" if math.isnan(pooled) else "within noise"


def differences(df: pd.DataFrame, suite: str, ref: str) -> pd.DataFrame:
    """Per context length, every run against `ref`: the difference of seed means and whether it passes RULE."""
    mean, std = per_seed(df, lambda d: tables.by_length(d, suite))
    if mean.empty or ref not in mean.index:
        return pd.DataFrame()
    n = cell_samples(df, suite)
    n.columns = [int(c) for c in n.columns]
    rows = []
    for run in mean.index:
        if run == ref:
            continue
        for length in mean.columns:
            a, b = float(mean.at[run, length]), float(mean.at[ref, length])
            sa, sb = float(std.at[run, length]), float(std.at[ref, length])
            pooled = math.sqrt((sa**2 + sb**2) / 2) if not (math.isnan(sa) or math.isnan(sb)) else float("nan")
            se = math.sqrt(_var(a, n.at[run, int(length)]) + _var(b, n.at[ref, int(length)]))
            diff = a - b
            real = not math.isnan(pooled) and abs(diff) > 2 * pooled and abs(diff) > 2 * se
            rows.append({"run": run, "context_length": int(length), "mean": round(a, 1), f"{ref} mean": round(b, 1),
                         "difference": round(diff, 1), "2x pooled std": round(2 * pooled, 1),
                         "2 binomial SE": round(2 * se, 1), "verdict": _verdict(real, pooled)})
    return pd.DataFrame(rows).set_index("run")


def _var(p: float, n: float) -> float:
    """Binomial variance of a 0-100 score that is a mean over n samples."""
    p = min(max(p, 0.0), 100.0)
    return p * (100 - p) / n if n and not math.isnan(n) else float("nan")


def build_seed_report(seed_dirs: Sequence[str | Path], out: str | Path, target: int | None = None,
                      ref: str | None = None, suites: Sequence[str] | None = None) -> list[Path]:
    """Table 1 and every suite table as mean ± std over the seeds, the differences against `ref` under RULE in
    `suites`, score-vs-length plots with error bars (seed std), heatmaps of the seed means, and scores.csv (every
    seed). `ref` / `suites` None: as the study recorded them (reports/record.py)."""
    out = Path(out)
    df = frame(seed_dirs)
    if ref is None or suites is None:
        rec = study_record(seed_dirs)
        ref, suites = ref if ref is not None else rec.reference, suites if suites is not None else rec.suites
    seeds = df.seed.nunique()
    written = []
    mean, std = per_seed(df, tables.table1)
    written += write_pm(mean, std, out, "table1", "Long-context and general scores per run", seeds)
    for suite in tables.suites(df):
        for spec in tables.view(suite).tables:
            if spec.layout == "by_language":
                continue
            mean, std = per_seed(df, lambda d, s=suite, sp=spec: tables.by_length(d, s, sp))
            if not mean.empty:
                written += write_pm(mean, std, out, spec.name, spec.caption, seeds, lower=spec.lower)
    diffs = [d.assign(suite=s) for s in suites if ref is not None and not (d := differences(df, s, ref)).empty]
    if diffs:
        table = pd.concat(diffs)
        table = table[["suite", *[c for c in table.columns if c != "suite"]]]
        text = (f"Differences against {ref}, mean of {seeds} seed{'s' if seeds > 1 else ''}; {RULE}.\n\n"
                + tables.to_markdown(table, bold=False))
        write_text(out / "differences.md", text)
        write_text(out / "differences.csv", table.to_csv())
        written += [out / "differences.md", out / "differences.csv"]
    windows = load.model_windows(next(iter(seed_runs(seed_dirs).values())))
    written += plots.suite_plots(df, windows, out, target)
    df.to_csv(out / "scores.csv", index=False)
    return written + [out / "scores.csv"]
