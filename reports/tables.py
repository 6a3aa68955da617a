"""Paper-style tables: Table 1 (NIAH(M), RULER, LongBench, general tasks) and RULER by length.

Each table is a DataFrame rendered to Markdown, LaTeX (booktabs) and CSV; the best value per column is bold in
Markdown and LaTeX.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

NIAH_M = ("niah_multikey_1", "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery")


def _mean(df: pd.DataFrame) -> pd.Series:
    return df.groupby("run")["value"].mean()


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = runs. NIAH(M): mean of the multi-needle RULER tasks over lengths; RULER: mean over lengths of the
    per-length task means; LongBench: its average when present; then every general task's first metric."""
    cols: dict[str, pd.Series] = {}
    ruler = df[df.suite == "ruler"]
    niah_m = ruler[ruler.task.isin(NIAH_M)]
    if not niah_m.empty:
        cols["NIAH(M)"] = _mean(niah_m)
    per_len = ruler[(ruler.task == "average") & ruler.context_length.notna()]
    if not per_len.empty:
        cols["RULER"] = _mean(per_len)
    lb = df[(df.suite == "longbench") & (df.task == "average") & (df.metric == "avg_en")]
    if not lb.empty:
        cols["LongBench"] = _mean(lb)
    general = df[df.suite == "general"]
    for task, g in general.groupby("task", sort=True):
        metric = "acc" if "acc" in set(g.metric) else sorted(set(g.metric))[0]
        cols[f"{task} ({metric})"] = _mean(g[g.metric == metric])
    out = pd.DataFrame(cols)
    out.index.name = "run"
    return out.reindex(sorted(df.run.unique()))


def ruler_by_length(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = runs; columns = lengths (mean over tasks), Avg, wAvg(inc), wAvg(dec), Effective length."""
    r = df[(df.suite == "ruler") & (df.task == "average") & df.context_length.notna()]
    if r.empty:
        return pd.DataFrame()
    wide = r.pivot_table(index="run", columns="context_length", values="value", aggfunc="mean")
    wide.columns = [int(c) for c in wide.columns]
    summary = df[(df.suite == "ruler") & (df.task == "summary")].pivot_table(
        index="run", columns="metric", values="value", aggfunc="mean")
    names = {"avg": "Avg", "wavg_inc": "wAvg(inc)", "wavg_dec": "wAvg(dec)", "effective_length": "Effective"}
    for key, name in names.items():
        if key in summary:
            wide[name] = summary[key]
    if "Effective" in wide:
        wide["Effective"] = wide["Effective"].map(lambda v: "-" if not v or math.isnan(v) else str(int(v)))
    wide.index.name = "run"
    return wide


LB_CATEGORIES = ("Single-Doc QA", "Multi-Doc QA", "Summarization", "Few-shot Learning", "Code Completion",
                 "Synthetic Tasks")


def longbench_by_category(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = (run, language); columns = Avg and the six categories (LongBench's leaderboard layout)."""
    lb = df[(df.suite == "longbench") & df.metric.isin(["avg_en", "avg_zh"])]
    if lb.empty:
        return pd.DataFrame()
    lb = lb.assign(language=lb.metric.str[-2:], column=lb.task.replace({"average": "Avg"}))
    wide = lb.pivot_table(index=["run", "language"], columns="column", values="value", aggfunc="mean")
    wide = wide[[c for c in ("Avg", *LB_CATEGORIES) if c in wide.columns]]
    wide.index = [f"{r} ({lang})" for r, lang in wide.index]
    wide.index.name = "run (language)"
    return wide


def longbench_e_by_bucket(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = run; columns = the LongBench-E length buckets (mean over its datasets)."""
    e = df[df.suite == "longbench_e"]
    if e.empty:
        return pd.DataFrame()
    names = {0: "0-4k", 4000: "4-8k", 8000: "8k+"}
    wide = e.pivot_table(index="run", columns="context_length", values="value", aggfunc="mean")
    wide.columns = [names.get(int(c), str(c)) for c in wide.columns]
    wide.index.name = "run"
    return wide


def niah_grid(df: pd.DataFrame, run: str) -> pd.DataFrame:
    """Depth (rows, percent) x context length (columns) of one run's NIAH scores."""
    n = df[(df.suite == "niah") & (df.run == run)]
    return n.pivot_table(index="depth", columns="context_length", values="value", aggfunc="mean")


def _bold_best(table: pd.DataFrame, wrap) -> pd.DataFrame:
    out = table.copy().astype(object)
    for col in table.columns:
        num = pd.to_numeric(table[col], errors="coerce")
        if num.notna().sum() < 2 or col == "Effective":
            out[col] = [_fmt(v) for v in table[col]]
            continue
        best = num.max()
        out[col] = [wrap(_fmt(v)) if pd.notna(n) and n == best else _fmt(v) for v, n in zip(table[col], num)]
    return out


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.1f}"
    return str(v)


def to_markdown(table: pd.DataFrame) -> str:
    t = _bold_best(table, lambda s: f"**{s}**")
    head = [table.index.name or ""] + [str(c) for c in t.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in t.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, caption: str) -> str:
    t = _bold_best(table, lambda s: f"\\textbf{{{s}}}")
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


def write(table: pd.DataFrame, out: Path, name: str, caption: str) -> list[Path]:
    """name.md, name.tex and name.csv (atomic writes)."""
    from longrecipe.io import write_text

    paths = [out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"]
    write_text(paths[0], to_markdown(table))
    write_text(paths[1], to_latex(table, caption))
    write_text(paths[2], table.to_csv())
    return paths
