"""The demo's side of its study tables: what a demo study compares (its record), and the tables written with it.

Why here: the tables themselves are reports (reports/study.py) and follow what a study recorded; which baselines
the demo trains (train.positions.METHODS), which run the others are held to (the full-length baseline) and which
suites its differences table judges is the demo's choice, so it is stated here. It is also what a kept study
written before study.json recorded it (and a seed folder without one, docs/demo-v1) was compared on, so
`longrecipe report --seeds` falls back on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from longrecipe.reports import study
from longrecipe.reports.record import StudyRecord
from longrecipe.train.positions import BASELINES, METHODS

DEMO_RECORD = StudyRecord(methods=BASELINES,
                          reference=next(m for m in BASELINES if METHODS[m].full_length),
                          suites=("passkey", "niah", "ruler"))


def compute_table(compute: Mapping[str, Mapping[str, float]], ratio: float) -> pd.DataFrame:
    """The demo's compute table (reports.study.compute_table with the demo's record)."""
    return study.compute_table(compute, ratio, DEMO_RECORD)


def write_study_tables(compute: Mapping[str, Mapping[str, float]], ratio: float, runs: Sequence[Path],
                       stage_runs: Sequence[Path], ratio_runs: Sequence[tuple[float, Path]], out: Path) -> list[Path]:
    """One demo study's compute / table3 / token_ratio tables (reports.study with the demo's record)."""
    return study.write_study_tables(compute, ratio, runs, stage_runs, ratio_runs, out, DEMO_RECORD)


def write_kept_study(seed_dirs: Sequence[Path], out: Path) -> list[Path]:
    """The per-study tables of a report over the demo's seeds (reports.study.write_kept_study; a kept study without
    a record: the demo's)."""
    return study.write_kept_study(seed_dirs, out, DEMO_RECORD)
