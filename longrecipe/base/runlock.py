"""One owner per run directory: an exclusive advisory lock (`fcntl.flock`) on `.lock` inside it.

Why flock: the kernel releases it when its holder exits however it exits (kill -9 included), so a stale lock
never needs cleaning and the same command resumes at once; a second process started into the same directory (a
second terminal, a re-submitted job) is refused in one line naming the holder instead of interleaving its steps and
predictions with the first one's. The lock file is created once and kept (unlinking it would let a process that
opened the old file and one that creates a new one both "hold" the lock); it holds the holder's pid.

Locks are counted per process: a command that writes into a directory its caller already holds (the demo's
evaluation inside the demo's run, `run`'s eval inside its own folder) takes it again without blocking itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"


class RunDirBusy(ValueError):
    """Another live process holds the directory (a ValueError: the CLI prints it as one line and exits 2)."""


_held: dict[Path, tuple[int, int]] = {}  # resolved dir -> (fd, depth) held by this process


def _holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(lock.read_text().split()[0])
        return f"pid {pid}"
    return "another process"


@contextlib.contextmanager
def hold(directory: str | os.PathLike, beside: bool = False) -> Iterator[Path]:
    """Hold `directory` (created if missing) for the duration of the block; refuse if another process holds it.

    `beside`: the lock file is `.NAME.lock` next to the directory instead (a model directory is written whole and
    swapped in at the end, see io.atomic_dir, and a model folder others load or upload keeps only its own files).

    When the block fails, a lock file this call created is removed again, and so are the folders it created that
    are empty then: a run refused after taking the lock (a check that needs the model loaded) leaves nothing behind.
    (Removing it re-opens the unlink race above only for a third process arriving within that instant.)"""
    path = Path(directory).absolute()
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield path
        finally:
            fd, depth = _held[path]
            _held[path] = (fd, depth - 1)
        return
    home = path.parent if beside else path
    made = [d for d in (home, *home.parents) if not d.exists()]  # what mkdir creates, deepest first
    home.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}{LOCK_NAME}" if beside else path / LOCK_NAME
    new_lock = not lock.exists()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirBusy(f"{path} is in use by {_holder(lock)} (one run per directory): wait for it to finish, "
                         f"stop it, or use another output directory") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[path] = (fd, 1)
    ok = False
    try:
        yield path
        ok = True
    finally:
        del _held[path]
        if not ok and new_lock:
            lock.unlink(missing_ok=True)
            for d in made:  # folders this call made, while they are empty
                if any(d.iterdir()):
                    break
                d.rmdir()
        os.close(fd)  # releases the lock


def held(directory: str | os.PathLike) -> bool:
    """Whether this process holds `directory`."""
    return Path(directory).absolute() in _held
