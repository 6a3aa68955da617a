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
    per-length task means; LongBench: its average when present; passkey: mean over lengths; held-out perplexity
    at the longest length; then every general task's first metric."""
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
    passkey = df[df.suite == "passkey"]
    if not passkey.empty:
        cols["passkey"] = _mean(passkey)
    ppl = df[(df.suite == "ppl") & df.context_length.notna()]
    if not ppl.empty:
        longest = int(ppl.context_length.max())
        cols[f"perplexity@{longest}"] = _mean(ppl[ppl.context_length == longest])
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


def by_length(df: pd.DataFrame, suite: str) -> pd.DataFrame:
    """Rows = runs; columns = context lengths (one score per length: passkey accuracy, perplexity)."""
    r = df[(df.suite == suite) & df.context_length.notna()]
    if r.empty:
        return pd.DataFrame()
    wide = r.pivot_table(index="run", columns="context_length", values="value", aggfunc="mean")
    wide.columns = [int(c) for c in wide.columns]
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
    from longrecipe.io import write_text

    paths = [out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"]
    write_text(paths[0], to_markdown(table, bold, lower))
    write_text(paths[1], to_latex(table, caption, bold, lower))
    write_text(paths[2], table.to_csv())
    return paths
