"""Make `import longrecipe` work from a bare checkout (a lent GPU machine has no network to pip-install into).

Why: the package maps top-level folders (core/, train/, ...) onto `longrecipe.*`; without an install, this builds
the same layout from symlinks in a temp folder and puts it first on sys.path.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_importable() -> None:
    if importlib.util.find_spec("longrecipe") is not None:
        return
    top = Path(tempfile.mkdtemp(prefix="longrecipe-src-"))
    pkg = top / "longrecipe"
    pkg.mkdir()
    for item in (ROOT / "core").iterdir():
        (pkg / item.name).symlink_to(item)
    for sub in ("train", "evaluate", "tasks", "reports"):
        (pkg / sub).symlink_to(ROOT / sub)
    sys.path.insert(0, str(top))
