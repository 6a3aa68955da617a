"""Read run directories (results.json, schema v1) into one tidy pandas DataFrame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from longrecipe.base.schema import Results, SchemaError

COLUMNS = ["run", "suite", "task", "task_version", "context_length", "depth", "metric", "value", "n", "n_null"]


class ReportError(ValueError):
    """Unusable input for a report or a check (one line)."""


def results_path(run: str | Path) -> Path:
    p = Path(run)
    return p if p.suffix == ".json" else p / "results.json"


def read_results(run: str | Path) -> dict:
    try:
        return Results.load(results_path(run)).to_dict()
    except SchemaError as err:
        raise ReportError(str(err).replace("no such results file", "no results file")) from None


def label(run: str | Path) -> str:
    """A run's name in tables: its folder name (the folder above results.json)."""
    p = results_path(run)
    return p.parent.name or str(p)


def frame(runs: Sequence[str | Path]) -> pd.DataFrame:
    """All score rows of all runs, one row per (run, suite, task, context_length, depth, metric)."""
    rows = []
    for run in runs:
        data = read_results(run)
        for s in data["scores"]:
            rows.append({"run": label(run), **{k: s.get(k) for k in COLUMNS[1:]}})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        raise ReportError("no scores in the given runs")
    return df


def model_windows(runs: Sequence[str | Path]) -> dict[str, int | None]:
    return {label(r): read_results(r)["model"].get("max_position_embeddings") for r in runs}
