"""What a study recorded about itself in its kept study.json (seed-K/study/study.json): the baselines it trained
beside the method under test, the run every other is compared with, the suites whose differences are judged.

Why a record: the tables over seeds (differences, compute, the token-ratio table) must follow from what the study
ran, not from what the demo happens to run today. A kept study written before the record existed (or a seed folder
without one) gets the fields its caller knows (`fallback`), else what the runs present say: the baselines of
train.positions.METHODS among them, the full-length one as the reference, and the suites the rule in seeds.py can
judge (0-100 scores by context length).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from longrecipe.reports import load, tables
from longrecipe.train.positions import METHODS

STUDY = Path("study") / "study.json"  # in a seed folder (demo.keep_study)
FIELDS = ("methods", "reference", "suites")


@dataclass(frozen=True)
class StudyRecord:
    """methods: the baselines, in the study's order; reference: the run every other is compared with (None: no
    differences table); suites: those whose differences against the reference are judged, in table order."""

    methods: tuple[str, ...] = ()
    reference: str | None = None
    suites: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"methods": list(self.methods), "reference": self.reference, "suites": list(self.suites)}


def ratio_label(ratio: float) -> str:
    """The name of LongRecipe's run trained at a token ratio (`longrecipe-30pct`): the demo names its runs by it and
    the compute table finds them by it."""
    return f"longrecipe-{round(100 * ratio)}pct"


def recorded(study: Mapping) -> dict:
    """The record's fields a study.json holds (a kept study written before the record existed holds none)."""
    out = {k: study[k] for k in FIELDS if k in study}
    try:
        return {k: (tuple(map(str, v)) if k != "reference" else (None if v is None else str(v)))
                for k, v in out.items()}
    except TypeError as err:
        raise load.ReportError(f"study.json: a malformed record ({err})") from None


def derived(df: pd.DataFrame) -> StudyRecord:
    """The record as the runs of one seed show it (`df`: their score rows)."""
    runs = set(df.run.unique())
    methods = tuple(m for m, spec in METHODS.items() if spec.baseline and m in runs)
    reference = next((m for m in methods if METHODS[m].full_length), None)
    judged = []
    for suite in tables.suites(df):
        rows = df[(df.suite == suite) & df.context_length.notna()]
        if not rows.empty and not any(tables.lower_is_better(m) for m in rows.metric.unique()):
            judged.append(suite)
    return StudyRecord(methods, reference, tuple(judged))


def study_record(seed_dirs: Sequence[str | Path], fallback: StudyRecord | None = None) -> StudyRecord:
    """The record of a study over seeds: each field as the first seed folder (name order) that recorded it has it,
    else as `fallback` has it, else derived from the first seed's runs."""
    found: dict = {}
    for d in sorted(map(Path, seed_dirs)):
        if (Path(d) / STUDY).is_file():
            found = {**recorded(read_study(Path(d))), **found}
    return complete(found, fallback, lambda: derived(load.frame(_runs(sorted(map(Path, seed_dirs))[0]))))


def complete(found: Mapping, fallback: StudyRecord | None, derive) -> StudyRecord:
    """A record from the fields found, the missing ones from `fallback`, else from `derive()` (called only if
    needed)."""
    fields = {**(fallback.to_json() if fallback is not None else {}), **found}
    if any(k not in fields for k in FIELDS):
        fields = {**derive().to_json(), **fields}
    return StudyRecord(tuple(fields["methods"]), fields["reference"], tuple(fields["suites"]))


def read_study(folder: Path) -> dict:
    """A seed folder's study.json (a broken one is a ReportError)."""
    try:
        data = json.loads((folder / STUDY).read_text())
    except ValueError as err:
        raise load.ReportError(f"{folder / 'study'}: not a kept study ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise load.ReportError(f"{folder / 'study'}: not a kept study (not a JSON object)")
    return data


def _runs(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob("*/results.json"))
