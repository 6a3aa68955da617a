"""Check the layering contracts of pyproject.toml ([tool.importlinter]) with import-linter: `make lint` runs it, and
so does tests/base/test_package.py.

Why a mirror: import-linter (grimp) reads packages with an `__init__.py`; `evaluate/` has none on purpose (so that
`import evaluate` from the repository root still finds Hugging Face's evaluate), so the check runs on a mirror of the
package made of symlinks in which `longrecipe/evaluate` gets an empty `__init__.py`.

    python tools/lint_imports.py      # exit status and report of lint-imports
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mirror(dest: Path) -> Path:
    """The package as `longrecipe.*` with every top-level folder in place, made of symlinks."""
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


def main() -> int:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        print("lint-imports not found: pip install import-linter (the dev extra installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = mirror(Path(tmp) / "src")
        res = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=work, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(work)})
    print(res.stdout + res.stderr, end="")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
