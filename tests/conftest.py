"""Shared fixtures: the committed tiny base model, and small random models built from its tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from longrecipe.base import models

    return models.resolve("tiny")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from longrecipe.base.modeling import load_model

    return load_model(tiny_dir, device="cpu")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the real console command in a subprocess (what a user types)."""
    full_env = {**os.environ, **(env or {})}
    cmd = [str(Path(sys.executable).parent / "longrecipe"), *args]
    return subprocess.run(cmd, cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
