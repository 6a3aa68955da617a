"""The demo's side of its study tables: what a demo study compares (its record; reports/study.py writes the tables).

Why here: the tables themselves are reports (reports/study.py) and follow what a study recorded; which baselines
the demo trains (train.positions.METHODS), which run the others are held to (the full-length baseline) and which
suites its differences table judges is the demo's choice, so it is stated here. It is also what a kept study
written before study.json recorded it (and a seed folder without one, docs/demo-v1) was compared on, so
`longrecipe report --seeds` falls back on it.
"""

from __future__ import annotations

from longrecipe.reports.record import StudyRecord
from longrecipe.train.positions import BASELINES, METHODS

DEMO_RECORD = StudyRecord(methods=BASELINES,
                          reference=next(m for m in BASELINES if METHODS[m].full_length),
                          suites=("passkey", "niah", "ruler"))
