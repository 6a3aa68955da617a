"""The report tests' fixture runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURE, write_run


@pytest.fixture()
def runs(tmp_path) -> list[Path]:
    return [write_run(tmp_path / name, spec) for name, spec in FIXTURE.items()]
