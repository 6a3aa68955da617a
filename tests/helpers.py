"""What many test modules share: the command line in process and as a real process, the one-line refusal contract,
and the small training setup. Tests import it as `helpers` (pytest's `pythonpath` puts tests/ on the path); no
test module imports another test module."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONGRECIPE = str(Path(sys.executable).parent / "longrecipe")  # the console script of this environment
TORCHRUN = str(Path(sys.executable).parent / "torchrun")

# The tiny training setup of the trainer tests: the committed tiny model extended 256 -> 512 on 128-token rows.
TRAIN_CONFIG = str(ROOT / "train" / "configs" / "tiny_longrecipe.yaml")
SMALL = ("train.batch_size=2", "train.train_length=128", "train.target_length=512", "train.warmup=2",
         "train.threads=1", "train.lr=1e-3")
TORCHRUN_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@dataclass
class Ran:
    """What a run of the command gives back, in process or not: exit code and the two streams."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> Ran:
    """`longrecipe ARGS` run in this process through `main()`, its output captured: the same code path as the console
    script without ~8 s of interpreter and torch start-up per call. What the command changes in the process (the
    environment, working directory, torch threads, the global RNGs) is put back afterwards, so that one test's
    command cannot steer the next test. An exception that escapes main() is exit 1 with its traceback on stderr, as
    the shell would see it."""
    import numpy as np
    import torch

    from longrecipe.recipes.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    rng = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    # stderr as a process has it: warnings (pytest would record them instead) and library log lines (their handlers
    # keep the stream they were made with) go to the captured stream too, so a one-line check sees every line
    handlers = [h for name in ("", "transformers") for h in logging.getLogger(name).handlers
                if type(h) is logging.StreamHandler]
    streams = [h.setStream(err) for h in handlers]
    try:
        os.environ.update(env or {})
        os.chdir(cwd or ROOT)
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warning_to_stderr
            try:
                code = main([str(a) for a in args])
            except SystemExit as stop:  # argparse's usage errors and --help
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # noqa: BLE001 - what the shell would show: a traceback and exit 1
                traceback.print_exc()
                code = 1
    finally:
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
    return Ran(int(code), out.getvalue(), err.getvalue())


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def cli_process(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900,
                input: str | None = None) -> subprocess.CompletedProcess:
    """The real console command in its own process: for what only a process shows (the exit code the shell sees,
    the imports a command pays, signals and kills, vLLM engines that start workers)."""
    return subprocess.run([LONGRECIPE, *map(str, args)], cwd=cwd or ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, input=input)


HOLD = """
import sys, time
from longrecipe.base import runlock
try:
    with runlock.hold(sys.argv[1], beside=sys.argv[2] == "beside"):
        print("holding", flush=True)
        time.sleep(float(sys.argv[3]))
except runlock.RunDirBusy as err:
    print(err, file=sys.stderr)
    sys.exit(2)
"""


def holder(path: Path, seconds: float = 60, beside: bool = False) -> subprocess.Popen:
    """A real process that holds `path` (base/runlock.py) and sleeps: returned once it holds; the caller kills it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "beside" if beside else "in", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    return proc


def signal_when(args: Sequence[str], ready: Callable[[], bool], sig: int = signal.SIGINT,
                timeout: float = 900) -> subprocess.CompletedProcess:
    """Start the console command, send it `sig` once `ready()` holds (polled every 20 ms), and wait for it: how a
    user's Ctrl-C (SIGINT) or a scheduler's stop (SIGTERM) reaches a run. Fails if the run ends before it is ready."""
    proc = subprocess.Popen([LONGRECIPE, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) before it was ready: {err[-2000:]}")
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def group_alive(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group `pgid`, read from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def gone(pgid: int, seconds: float = 20) -> bool:
    """Whether group `pgid` has no live process within `seconds`."""
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`longrecipe serve MODEL ARGS` as a user runs it, a real process on a free loopback port. Starting one does not
    wait (several start side by side: a start is mostly single-threaded imports); `ready()` waits for its parity
    probe line (or its serving line when started with --probe-samples 0); `stop()` is the user's Ctrl-C and checks
    what it promises: exit 0, the stopped line, no process of the server left and its port free again."""

    def __init__(self, model: Path | str, folder: Path, *args: str, probe: int = 4, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.folder, self.probe = folder, probe
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = folder / "serve.out", folder / "serve.err"
        cmd = [LONGRECIPE, "serve", str(model), "--port", str(self.port), "--probe-samples", str(probe), "--log",
               str(folder / "server.log"), *args]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, env={**os.environ, **(env or {})})

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def ready(self, timeout: float = 900) -> str:
        """The probe line (the serving line without a probe), once the server answers."""
        want = "parity probe: " if self.probe else "serving "
        deadline = time.monotonic() + timeout
        while not (found := [x for x in self.lines() if x.startswith(want)]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"serve ended (exit {self.proc.returncode}) before it was ready: "
                                     f"{self.err.read_text()[-2000:]}")
            time.sleep(0.2)
        return found[0]

    def server_pid(self) -> int:
        """The server's pid, which is also its process group (`serve` prints it when it starts the server)."""
        (line,) = [x for x in self.lines() if x.startswith("started the server: pid ")]
        return int(line.split()[4])

    def stop(self) -> str:
        """Ctrl-C: exit 0 with the stopped line; the server's processes gone and its port free."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=120)
        assert code == 0 and "Traceback" not in self.err.read_text(), self.err.read_text()[-2000:]
        last = self.lines()[-1]
        assert last == f"stopped the server (SIGINT); port {self.port} is free", self.lines()[-3:]
        assert gone(self.server_pid()), group_alive(self.server_pid())  # its engine and workers too
        with socket.socket() as s:  # free: no server listens (as servers bind: TIME_WAIT connections do not count)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen()
        return last


def interrupted_line(res, code: int) -> str:
    """A clean stop: the exit code a shell reports for the signal, no traceback, and stderr ending with the one line
    that says how far the run got and that the same command resumes."""
    err = err_lines(res)
    assert res.returncode == code and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert err and " interrupted " in err[-1] and err[-1].endswith("; the same command resumes"), res.stderr[-3000:]
    return err[-1]


def err_lines(res) -> list[str]:
    return [x for x in res.stderr.splitlines() if x.strip()]


def one_line_exit_2(res, *needles: str) -> str:
    """The contract for bad input: exit 2 and exactly one non-empty line on stderr holding every needle."""
    err = err_lines(res)
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(err) == 1, res.stderr[-3000:]
    assert all(n in err[0] for n in needles), err[0]
    return err[0]


def train_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "model.safetensors"))


def torchrun(out: Path, *args: str, nproc: int = 2) -> list[str]:
    """`torchrun` of `longrecipe train` on `nproc` CPU processes (gloo)."""
    return [TORCHRUN, "--standalone", "--nproc_per_node", str(nproc), "-m", "longrecipe", "train", "--config",
            TRAIN_CONFIG, f"out={out}", *args]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def essays() -> str | None:
    """The essay folder for RULER's essay haystacks: $LONGRECIPE_ESSAYS_DIR (set by .ci/run), else ../shared's copy
    beside the checkout, else None (the built-in text)."""
    env = os.environ.get("LONGRECIPE_ESSAYS_DIR")
    candidates = [env] if env else [str(ROOT.parent / "shared" / "data" / "paul_graham_essays")]
    return next((c for c in candidates if c and Path(c).is_dir()), None)


def results_json(scores: list[dict]) -> dict:
    """A results.json document (schema version 1) holding `scores`, with a placeholder run record."""
    return {"schema_version": 1, "run": {"id": "r", "created": "now", "command": "c", "git_sha": None,
                                         "git_dirty": None, "config": {}, "versions": {}, "seed": 1, "hardware": {}},
            "model": {"path": "m"}, "backend": "hf", "scores": scores}


def score_row(value, length: int = 512, task: str = "passkey", suite: str = "passkey", **kw) -> dict:
    return {"suite": suite, "task": task, "metric": "exact_match", "value": value, "context_length": length,
            "depth": None, "n": 10, **kw}


# Two fixture runs of known scores (a base with a 256 window, a model extended to 2048) for the report tests.
LENGTHS = (256, 512, 1024, 2048)

FIXTURE = {
    "base": {"niah_multikey_1": (90, 40, 10, 0), "niah_multivalue": (80, 30, 0, 0), "cloze": 60.0, "window": 256},
    "longrecipe": {"niah_multikey_1": (88, 85, 80, 70), "niah_multivalue": (82, 75, 70, 60), "cloze": 58.0,
                   "window": 2048},
}

def write_run(folder: Path, spec: dict) -> Path:
    """A results.json of RULER, NIAH and general rows from a FIXTURE spec, in `folder`."""
    from longrecipe.base.schema import ModelInfo, Results, ScoreRow, run_info
    from longrecipe.tasks import ruler

    rows = []
    for task in ("niah_multikey_1", "niah_multivalue"):
        rows += [ScoreRow("ruler", task, "string_match_all", float(v), 1, n, None, 10)
                 for n, v in zip(LENGTHS, spec[task])]
    per_len = {n: (a + b) / 2 for n, a, b in zip(LENGTHS, spec["niah_multikey_1"], spec["niah_multivalue"])}
    rows += [ScoreRow("ruler", "average", "mean_over_tasks", v, 1, n, None, 2) for n, v in per_len.items()]
    agg = ruler.aggregate(per_len)
    rows += [ScoreRow("ruler", "summary", m, round(agg[m], 2), 1, None, None, 4) for m in ("avg", "wavg_inc",
                                                                                          "wavg_dec")]
    rows.append(ScoreRow("ruler", "summary", "effective_length", float(agg["effective_length"] or 0), 1))
    for n in LENGTHS:
        for depth in (0.0, 50.0, 100.0):
            rows.append(ScoreRow("niah", "needle", "substring", 100.0 if n <= spec["window"] else 0.0, 1, n, depth, 1))
    rows.append(ScoreRow("general", "longrecipe_cloze", "acc", spec["cloze"], 1, None, None, 60))
    res = Results(run_info("fixture", {}), ModelInfo("tiny", None, spec["window"]), "hf", tuple(rows))
    folder.mkdir(parents=True, exist_ok=True)
    res.save(folder / "results.json")
    return folder
