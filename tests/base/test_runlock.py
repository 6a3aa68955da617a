"""One owner per run directory (longrecipe/base/runlock.py): a real second process is refused with the holder's pid,
a killed holder frees the directory at once, and a refused or failed run leaves no lock and no folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HOLD, holder

from longrecipe.base import runlock


@pytest.mark.integration
def test_a_second_process_is_refused_with_the_holders_pid_and_a_killed_holder_frees_it(tmp_path):
    run = tmp_path / "run"
    first = holder(run)
    try:
        with pytest.raises(runlock.RunDirBusy, match=f"{run} is in use by pid {first.pid}"):
            with runlock.hold(run):
                pass
        second = subprocess.run([sys.executable, "-c", HOLD, str(run), "in", "0"], capture_output=True, text=True)
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr.strip().splitlines() == [f"{run} is in use by pid {first.pid} (one run per directory): "
                                                      f"wait for it to finish, stop it, or use another output "
                                                      f"directory"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with runlock.hold(run):  # the kernel released the lock with its holder: at once, nothing to clean
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # kept: unlinking it would race (see runlock)


def test_the_same_process_takes_its_own_directory_again():
    # `run` holds its folder and its training takes it again: no self-deadlock, released by the outer block
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        with runlock.hold(run):
            with runlock.hold(run):
                assert runlock.held(run)
            assert runlock.held(run)
        assert not runlock.held(run)


def test_a_failed_run_leaves_no_lock_and_no_folder_it_created(tmp_path):
    deep = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError, match="refused"):
        with runlock.hold(deep):
            raise ValueError("refused after the lock was taken")
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "config.yaml").write_text("x")
    with pytest.raises(ValueError):
        with runlock.hold(kept):
            raise ValueError("refused")
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml"]
    with pytest.raises(ValueError):
        with runlock.hold(tmp_path / "cache" / "model", beside=True):
            raise ValueError("refused")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


@pytest.mark.integration
def test_a_model_folder_is_locked_beside_it_and_keeps_only_its_own_files(tmp_path):
    model = tmp_path / "merged"
    first = holder(model, beside=True)
    try:
        assert not model.exists() and (tmp_path / ".merged.lock").read_text().strip() == str(first.pid)
        with pytest.raises(runlock.RunDirBusy, match=f"pid {first.pid}"):
            with runlock.hold(model, beside=True):
                pass
    finally:
        first.kill()
        first.wait()
    with runlock.hold(model, beside=True):  # free again once its holder is gone
        model.mkdir()
    assert list(model.iterdir()) == []
