"""How a suite shows up in reports and in the regression gate: plain data that each task declares and `reports/`
interprets (so the reports name no suite, and a new suite appears in the tables, plots and gate by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Column:
    """A Table-1 column: per run, the mean of the suite's rows that match. `{suite}` in the name is replaced."""

    name: str = "{suite}"
    tasks: tuple[str, ...] = ()  # only these tasks (empty: every task)
    metrics: tuple[str, ...] = ()  # only these metrics (empty: every metric)
    with_length: bool = False  # only rows that have a context length
    longest: bool = False  # only the longest context length; the name gets "@<length>"
    per_task: bool = False  # one column per task, "<task> (<metric>)": its 'acc' metric, else its first


@dataclass(frozen=True)
class Table:
    """A table with one row per run (md, tex, csv). by_length: columns = context lengths (mean of the matching
    rows), then `summary` columns read from the rows of `summary_task`; by_language: rows = (run, language of an
    'avg_<lang>' metric), columns = tasks in `order` ('average' shown as 'Avg')."""

    name: str
    caption: str
    layout: Literal["by_length", "by_language"] = "by_length"
    tasks: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    summary_task: str | None = None
    summary: tuple[tuple[str, str], ...] = ()  # (metric, column title)
    integer_columns: tuple[str, ...] = ()  # shown as integers, '-' for none (an effective length)
    column_names: tuple[tuple[int, str], ...] = ()  # context length -> title (LongBench-E's buckets)
    order: tuple[str, ...] = ()
    lower: bool = False  # the best value is the smallest (perplexities)


@dataclass(frozen=True)
class Plot:
    """Score against context length, one line per run."""

    name: str
    ylabel: str
    tasks: tuple[str, ...] = ()
    log_y: bool = False


@dataclass(frozen=True)
class View:
    """What `longrecipe check` tracks without --per-task: the rows of `gate_tasks` with `gate_metrics` (empty: all),
    minus `ungated_metrics`; gate="depth_means" tracks their mean over depths per (task, length)."""

    columns: tuple[Column, ...] = (Column(),)
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    heatmap: str = ""  # a depth x length heatmap per run, with this title
    summary_csv: bool = False  # RULER's summary.csv per length (Tasks, Score, Nulls) from its non-derived rows
    lm_eval_names: Literal["task", "suite_task"] = "suite_task"  # task names in the lm-eval export
    gate: Literal["rows", "depth_means"] = "rows"
    gate_tasks: tuple[str, ...] = ()
    gate_metrics: tuple[str, ...] = ()
    ungated_metrics: tuple[str, ...] = ()
