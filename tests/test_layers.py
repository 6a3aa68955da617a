"""The layering (docs/architecture.md) checked by import-linter: base <- tasks <- {train, evaluate} <- reports <-
recipes, tasks and reports without torch, evaluate and train independent.

import-linter (grimp) reads packages with an `__init__.py`; `evaluate/` has none on purpose (so that `import
evaluate` from the repository root still finds Hugging Face's evaluate), so the check runs on a mirror of the
package made of symlinks in which `longrecipe/evaluate` gets an empty `__init__.py`. The contracts are in
pyproject.toml ([tool.importlinter]).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mirror(dest: Path) -> Path:
    pkg = dest / "longrecipe"
    pkg.mkdir(parents=True)
    for item in (ROOT / "longrecipe").iterdir():
        (pkg / item.name).symlink_to(item)
    for sub in ("train", "tasks", "reports"):
        (pkg / sub).symlink_to(ROOT / sub)
    (pkg / "evaluate").mkdir()
    for item in (ROOT / "evaluate").iterdir():
        (pkg / "evaluate" / item.name).symlink_to(item)
    (pkg / "evaluate" / "__init__.py").write_text("")
    return dest


def test_import_contracts_hold(tmp_path):
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (the dev extra installs it)")
    work = mirror(tmp_path / "src")
    res = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=work, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(work)})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "4 kept, 0 broken" in res.stdout
