"""`longrecipe report RUN_DIR... --out DIR`: every table (md, tex, csv) and plot (png, svg) of a set of runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from longrecipe.reports import export, load, plots, settings, tables


def build_report(runs: Sequence[str | Path], out: str | Path, target: int | None = None,
                 train_logs: dict[str, Path] | None = None, fmt: str = "tables",
                 train_curves: dict[str, Path] | None = None) -> list[Path]:
    """fmt: 'tables' (tables, plots, RULER summary.csv files) or 'lm-eval' (lm-eval's results JSON per run too)."""
    out = Path(out)
    df = load.frame(runs)
    results = {load.label(r): load.read_results(r) for r in runs}
    for line in settings.differences({name: data.get("manifest") or {} for name, data in results.items()}):
        print(f"warning: {line}", file=sys.stderr)  # side by side, the setting would read as the model
    written = export.write_exports(results, out, fmt == "lm-eval")
    t1 = tables.table1(df)
    written += tables.write(t1, out, "table1", "Long-context and general scores per run") if not t1.empty else []
    for table, spec in tables.suite_tables(df):  # a table only for the suites the runs hold
        written += tables.write(table, out, spec.name, spec.caption, lower=spec.lower)
    written += plots.suite_plots(df, load.model_windows(runs), out, target)
    written += plots.loss_curves(plots.train_logs(runs) if train_logs is None else train_logs, out)
    written += plots.score_curves(plots.train_curves(runs) if train_curves is None else train_curves, out)
    written += plots.table1_bars(t1, out)
    df.to_csv(out / "scores.csv", index=False)
    written.append(out / "scores.csv")
    return written
