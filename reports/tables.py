"""Paper-style tables from the suites' declared views (tasks/views.py): Table 1 and each suite's own tables.

Each table is a DataFrame rendered to Markdown, LaTeX (booktabs) and CSV; the best value per column is bold in
Markdown and LaTeX.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from longrecipe.base.io import write_text
from longrecipe.tasks.suites import REGISTRY
from longrecipe.tasks.views import Column, Table, View


def view(suite: str) -> View:
    """A suite's view from the task registry (a suite it does not know gets the default: one mean column, every
    row gated)."""
    task = REGISTRY.get(suite)
    return task.view if task is not None else View()


def suites(df: pd.DataFrame) -> list[str]:
    """The suites present in `df`: registered ones in registry order, then any others by name."""
    present = set(df.suite.unique()) if not df.empty else set()
    return [s for s in REGISTRY if s in present] + sorted(present - set(REGISTRY))


def _mean(df: pd.DataFrame) -> pd.Series:
    return df.groupby("run")["value"].mean()


def _match(df: pd.DataFrame, tasks: tuple[str, ...], metrics: tuple[str, ...]) -> pd.DataFrame:
    if tasks:
        df = df[df.task.isin(tasks)]
    return df[df.metric.isin(metrics)] if metrics else df


def _columns(rows: pd.DataFrame, suite: str, col: Column) -> dict[str, pd.Series]:
    rows = _match(rows, col.tasks, col.metrics)
    if col.with_length or col.longest:
        rows = rows[rows.context_length.notna()]
    if rows.empty:
        return {}
    name = col.name.format(suite=suite)
    if col.longest:
        longest = int(rows.context_length.max())
        return {f"{name}@{longest}": _mean(rows[rows.context_length == longest])}
    if not col.per_task:
        return {name: _mean(rows)}
    out = {}
    for task, g in rows.groupby("task", sort=True):
        metric = "acc" if "acc" in set(g.metric) else sorted(set(g.metric))[0]
        out[f"{task} ({metric})"] = _mean(g[g.metric == metric])
    return out


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = runs; columns = each suite's headline columns, in registry order (RULER: NIAH(M) and the mean over
    lengths of the per-length task means; LongBench: its average; passkey: mean over lengths; perplexity at the
    longest length; every general task's first metric)."""
    cols: dict[str, pd.Series] = {}
    for suite in suites(df):
        for col in view(suite).columns:
            cols.update(_columns(df[df.suite == suite], suite, col))
    out = pd.DataFrame(cols)
    out.index.name = "run"
    return out.reindex(sorted(df.run.unique()))


def by_length(df: pd.DataFrame, suite: str, spec: Table | None = None) -> pd.DataFrame:
    """Rows = runs; columns = context lengths (mean of the matching rows), then the spec's summary columns."""
    spec = spec or Table("", "")
    r = _match(df[(df.suite == suite) & df.context_length.notna()], spec.tasks, spec.metrics)
    if r.empty:
        return pd.DataFrame()
    wide = r.pivot_table(index="run", columns="context_length", values="value", aggfunc="mean")
    names = dict(spec.column_names)
    wide.columns = [names.get(int(c), str(c)) if names else int(c) for c in wide.columns]
    if spec.summary_task:
        summary = df[(df.suite == suite) & (df.task == spec.summary_task)].pivot_table(
            index="run", columns="metric", values="value", aggfunc="mean")
        for key, name in spec.summary:
            if key in summary:
                wide[name] = summary[key]
    for name in spec.integer_columns:
        if name in wide:
            wide[name] = wide[name].map(lambda v: "-" if not v or math.isnan(v) else str(int(v)))
    wide.index.name = "run"
    return wide


def by_language(df: pd.DataFrame, suite: str, spec: Table) -> pd.DataFrame:
    """Rows = (run, language of an avg_<lang> metric); columns = the tasks in the spec's order (LongBench's
    leaderboard layout: Avg and the six categories)."""
    rows = _match(df[df.suite == suite], spec.tasks, spec.metrics)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(language=rows.metric.str[-2:], column=rows.task.replace({"average": "Avg"}))
    wide = rows.pivot_table(index=["run", "language"], columns="column", values="value", aggfunc="mean")
    wide = wide[[c for c in spec.order if c in wide.columns]] if spec.order else wide
    wide.index = [f"{r} ({lang})" for r, lang in wide.index]
    wide.index.name = "run (language)"
    return wide


def suite_tables(df: pd.DataFrame) -> list[tuple[pd.DataFrame, Table]]:
    """Every table the suites in `df` declare, in registry order (empty ones left out)."""
    out = []
    for suite in suites(df):
        for spec in view(suite).tables:
            table = by_language(df, suite, spec) if spec.layout == "by_language" else by_length(df, suite, spec)
            if not table.empty:
                out.append((table, spec))
    return out


def depth_grid(df: pd.DataFrame, suite: str, run: str) -> pd.DataFrame:
    """Depth (rows, percent) x context length (columns) of one run's scores in a suite."""
    n = df[(df.suite == suite) & (df.run == run)]
    return n.pivot_table(index="depth", columns="context_length", values="value", aggfunc="mean")


LOWER_IS_BETTER = ("perplexity", "bits_per_byte")


def lower_is_better(column: object) -> bool:
    """Perplexities: the best value of such a column is its smallest."""
    return any(key in str(column) for key in LOWER_IS_BETTER)


def _bold_best(table: pd.DataFrame, wrap, lower: bool = False) -> pd.DataFrame:
    """Best value of each column in bold (the smallest where `lower` or the column is a cost or a perplexity);
    nothing where all values tie."""
    out = table.copy().astype(object)
    for col in table.columns:
        num = pd.to_numeric(table[col], errors="coerce")
        if num.notna().sum() < 2 or num.nunique() < 2 or col == "Effective":
            out[col] = [_fmt(v) for v in table[col]]
            continue
        best = num.min() if lower or lower_is_better(col) else num.max()
        out[col] = [wrap(_fmt(v)) if pd.notna(n) and n == best else _fmt(v) for v, n in zip(table[col], num)]
    return out


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1e5:  # FLOPs, token counts
            return f"{v:.3g}"
        return f"{v:.2f}" if abs(v) < 10 and v != round(v) else f"{v:.1f}"  # bits per byte, FLOP ratios
    return str(v)


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    return table.apply(lambda col: [_fmt(v) for v in col]).astype(object) if not table.empty else table


def to_markdown(table: pd.DataFrame, bold: bool = True, lower: bool = False) -> str:
    t = _bold_best(table, lambda s: f"**{s}**", lower) if bold else _plain(table)
    head = [table.index.name or ""] + [str(c) for c in t.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in t.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, caption: str, bold: bool = True, lower: bool = False) -> str:
    t = _bold_best(table, lambda s: f"\\textbf{{{s}}}", lower) if bold else _plain(table)
    esc = lambda s: str(s).replace("_", "\\_").replace("%", "\\%")  # noqa: E731
    cols = "l" + "r" * len(t.columns)
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(caption)}}}", f"\\begin{{tabular}}{{{cols}}}",
             "\\toprule", " & ".join([esc(table.index.name or "")] + [esc(c) for c in t.columns]) + " \\\\",
             "\\midrule"]
    for idx, row in t.iterrows():
        lines.append(" & ".join([esc(idx)] + [esc(v) if "textbf" not in str(v) else str(v).replace("_", "\\_")
                                              for v in row]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write(table: pd.DataFrame, out: Path, name: str, caption: str, bold: bool = True,
          lower: bool = False) -> list[Path]:
    """name.md, name.tex and name.csv (atomic writes); `bold` marks the best value of each column (the smallest
    where `lower`, e.g. perplexities)."""
    paths = [out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"]
    write_text(paths[0], to_markdown(table, bold, lower))
    write_text(paths[1], to_latex(table, caption, bold, lower))
    write_text(paths[2], table.to_csv())
    return paths
