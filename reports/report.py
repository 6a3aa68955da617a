"""`longrecipe report RUN_DIR... --out DIR`: every table (md, tex, csv) and plot (png, svg) of a set of runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from longrecipe.reports import export, load, plots, tables


def build_report(runs: Sequence[str | Path], out: str | Path, target: int | None = None,
                 train_logs: dict[str, Path] | None = None, fmt: str = "tables") -> list[Path]:
    """fmt: 'tables' (tables, plots, RULER summary.csv files) or 'lm-eval' (lm-eval's results JSON per run too)."""
    out = Path(out)
    df = load.frame(runs)
    written = export.write_exports({load.label(r): load.read_results(r) for r in runs}, out, fmt == "lm-eval")
    t1 = tables.table1(df)
    for table, name, caption, lower in (
        (t1, "table1", "Long-context and general scores per run", False),
        (tables.ruler_by_length(df), "ruler_by_length", "RULER by context length", False),
        (tables.by_length(df, "passkey"), "passkey_by_length", "Passkey retrieval (exact match) by context length",
         False),
        (tables.by_length(df, "ppl"), "perplexity_by_length", "Held-out perplexity by context length (lower is "
         "better)", True),
        (tables.longbench_by_category(df), "longbench_by_category", "LongBench by category and language", False),
        (tables.longbench_e_by_bucket(df), "longbench_e_by_bucket", "LongBench-E by length bucket", False),
    ):
        if not table.empty:  # a table only for the suites the runs hold
            written += tables.write(table, out, name, caption, lower=lower)
    for run in sorted(df[df.suite == "niah"].run.unique()):
        written += plots.niah_heatmap(df, run, out)
    windows = load.model_windows(runs)
    written += plots.ruler_vs_length(df, windows, out, target)
    written += plots.suite_vs_length(df, "passkey", "passkey exact match", windows, out, target)
    written += plots.suite_vs_length(df, "ppl", "held-out perplexity (log)", windows, out, target, log_y=True)
    written += plots.loss_curves(plots.train_logs(runs) if train_logs is None else train_logs, out)
    written += plots.table1_bars(t1, out)
    df.to_csv(out / "scores.csv", index=False)
    written.append(out / "scores.csv")
    return written
