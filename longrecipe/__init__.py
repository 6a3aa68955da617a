"""longrecipe: efficient context extension (LongRecipe) and a long-context evaluation harness."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The top-level folders train/, evaluate/, tasks/ and reports/ install as longrecipe.train, ... From a source
# checkout (no install, or setuptools' default editable install, which cannot map `evaluate/`: it has no
# __init__.py so that `import evaluate` from the repository root still finds Hugging Face's evaluate, which lm-eval
# imports), let the repository root be searched for them as well. Wheels and strict editable installs hold them
# inside the package and never reach this branch.
_here = _Path(__file__).parent
if not (_here / "evaluate").is_dir() and (_here.parent / "evaluate" / "runner.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 (a package's __path__)
