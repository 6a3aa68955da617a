"""The package: import shadowing of Hugging Face `evaluate`, the subpackages, and the layering contracts checked by
import-linter (base <- tasks <- {train, evaluate} <- reports <- recipes; tasks and reports without torch).

The contracts are in pyproject.toml ([tool.importlinter]); tools/lint_imports.py runs import-linter on them (on a
mirror of the package: its docstring says why), for `make lint` and for this test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT


@pytest.mark.integration
def test_import_evaluate_from_repo_root_is_huggingface():
    # The repo has a top-level evaluate/ folder; it must not shadow Hugging Face `evaluate` (lm-eval imports it).
    out = subprocess.run([sys.executable, "-c", "import evaluate, sys; print(evaluate.__file__); "
                          "print(hasattr(evaluate, 'load'))"], cwd=ROOT, capture_output=True, text=True, check=True)
    path, has_load = out.stdout.split()
    assert "site-packages" in path and not path.startswith(str(ROOT / "evaluate")), path
    assert has_load == "True"


def test_packages_import_as_longrecipe_subpackages():
    import longrecipe.evaluate.hf_backend as hf
    import longrecipe.tasks.passkey as pk
    import longrecipe.train.positions as pos

    assert hf.__file__.startswith(str(ROOT / "evaluate")) or "longrecipe/evaluate" in hf.__file__
    assert callable(pos.longrecipe_positions) and callable(pk.generate)


@pytest.mark.integration
def test_import_contracts_hold():
    if shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("import-linter is not installed (the dev extra installs it)")
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "lint_imports.py")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "4 kept, 0 broken" in res.stdout  # what `make lint` runs
