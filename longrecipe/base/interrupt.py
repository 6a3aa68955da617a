"""Ctrl-C (SIGINT) and a scheduler's stop (SIGTERM) as a clean stop: one line, exit 130 / 143, no torn file.

Why not the default: KeyboardInterrupt prints a traceback from wherever it lands (a half-appended predictions line,
a checkpoint being written) and SIGTERM kills Python without running any cleanup. Here the signal raises
`Interrupted` at once, except inside `deferred()` blocks (an append, a training step and its checkpoint), where it is
noted and raised when the block ends; the training loop asks `requested()` between steps so that it can save the
step it reached. A second signal while the first one waits stops the process at once (what kill -9 would do: every
file is written atomically or appended whole, so the same command still resumes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, what shells report


class Interrupted(BaseException):  # noqa: N818 (a BaseException like KeyboardInterrupt: `except Exception` lets it through)
    """The run was asked to stop; `where` says how far it got (set by `progress`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = EXIT_CODES.get(signal.Signals(signum), 128 + signum)
        self.where = _state["where"]


_state: dict = {"pending": None, "depth": 0, "where": "", "command": "longrecipe"}


def progress(where: str) -> None:
    """How far the run got, for the interrupted line ("at step 12", "after 40 samples")."""
    _state["where"] = where


def requested() -> int | None:
    """The signal waiting to stop the run, if any."""
    return _state["pending"]


def _handler(signum: int, frame: object) -> None:
    if _state["pending"] is not None:
        print(f"{_state['command']}: interrupted again: stopping now; the same command resumes", file=sys.stderr,
              flush=True)
        os._exit(EXIT_CODES.get(signal.Signals(signum), 128 + signum))
    _state["pending"] = signum
    if _state["depth"] == 0:
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block a signal must not cut: the stop is raised when it ends (at once on a second signal)."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if _state["depth"] == 0 and _state["pending"] is not None:
        raise Interrupted(_state["pending"])


@contextlib.contextmanager
def handling(command: str) -> Iterator[None]:
    """Install the handlers for the duration of a command (restored after: in-process callers keep theirs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in EXIT_CODES}
    _state.update(pending=None, depth=0, where="", command=command)
    for s in EXIT_CODES:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        _state.update(pending=None, depth=0, where="")
