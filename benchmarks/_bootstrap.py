"""Make `import longrecipe` work from a bare checkout (a lent GPU machine has no network to pip-install into).

Why: the package maps top-level folders (train/, evaluate/, ...) onto `longrecipe.*`; without an install, the package
itself adds the repository root to its search path (see longrecipe/__init__.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_importable() -> None:
    """The repository root on sys.path is enough: `longrecipe/__init__.py` then finds train/, evaluate/, ... there."""
    if importlib.util.find_spec("longrecipe") is None:
        sys.path.insert(0, str(ROOT))
