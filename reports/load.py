"""Read run directories (results.json, schema v1) into one tidy pandas DataFrame."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from longrecipe.base.schema import Results, SchemaError

CURVE = "train_eval.jsonl"  # what train.eval writes into a training run (train/recipe.py)
CURVE_FIELDS = ("step", "tokens", "flops", "suite", "task", "metric", "value", "context_length")

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


def curve_path(run: str | Path) -> Path:
    p = Path(run)
    return p if p.suffix == ".jsonl" else p / CURVE


def read_curve(run: str | Path) -> list[dict]:
    """The rows of a run's train_eval.jsonl (train.eval), each checked for the fields the curves need."""
    path = curve_path(run)
    if not path.is_file():
        raise ReportError(f"{path}: no such file (a training run with train.eval.every > 0 writes it)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ReportError(f"{path}:{i}: not a JSON line") from None
        missing = [k for k in CURVE_FIELDS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ReportError(f"{path}:{i}: no {missing[0]!r} field")
        rows.append(row)
    if not rows:
        raise ReportError(f"{path}: no rows")
    return rows


def curve_as_results(run: str | Path) -> dict:
    """A curve as results rows whose task names the step (`passkey@step40`): what `check --curve` gates row by
    row, so that every point of the curve is held to the baseline's point at the same step."""
    return {"scores": [{"suite": r["suite"], "task": f"{r['task']}@step{r['step']}", "metric": r["metric"],
                        "value": r["value"], "context_length": r["context_length"], "depth": r.get("depth")}
                       for r in read_curve(run)]}


def curve_settings(run: str | Path) -> dict:
    """What made a curve, from the training run's config.yaml beside it: its train.eval section (suites, lengths,
    samples, keys), its model and RoPE; {} when there is no config (a copied curve file)."""
    config = curve_path(run).parent / "config.yaml"
    if not config.is_file():
        return {}
    try:
        data = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError:
        raise ReportError(f"{config}: not readable YAML") from None
    train = data.get("train") or {}
    return {"train.eval": train.get("eval"), "model.path": (data.get("model") or {}).get("path"),
            "rope": data.get("rope")}
