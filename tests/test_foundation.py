"""Layout, CLI, import shadowing."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, run_cli

SUBCOMMANDS = ("tiny-base", "passkey", "train", "run", "merge", "analyze", "eval", "report", "check")


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


def test_help_lists_every_subcommand():
    res = run_cli("--help")
    assert res.returncode == 0
    for name in SUBCOMMANDS:
        assert name in res.stdout
    for name in SUBCOMMANDS:
        sub = run_cli(name, "--help")
        assert sub.returncode == 0 and "usage: longrecipe " + name in sub.stdout


def test_missing_model_is_one_line_exit_2(tmp_path):
    res = run_cli("passkey", "--model", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no model at" in res.stderr


def test_length_above_window_needs_flag():
    res = run_cli("passkey", "--model", "tiny", "--lengths", "1024", "--samples", "1")
    assert res.returncode == 2 and "--allow-extrapolation" in res.stderr
