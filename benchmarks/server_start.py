"""How long vLLM's OpenAI server takes to answer as `longrecipe serve` starts it, with vLLM's default worker process
on CPU (`--distributed-executor-backend mp`) against the worker in the engine's process (`uni`).

    python benchmarks/server_start.py [--model tiny] [--repeats 2]

Each start is a real server on a free loopback port, timed from the process start until GET /v1/models answers,
then stopped with its whole process group; starts alternate between the two so that a busy moment hurts both.
Prints each start and the ratio of the medians (uni / mp). Finding (RESULTS.md): 1.01, because vLLM's CPU platform
turns `uni` back into `mp` (platforms/cpu.py), so `serve` passes no executor flag.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from longrecipe.base import model_dirs
from longrecipe.evaluate import serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_once(model: Path, executor: str, log: Path) -> float:
    port = free_port()
    env, argv = serving.server_command(model, 1024, port=port, cpu=True)
    argv += ["--distributed-executor-backend", executor]
    t0 = time.monotonic()
    with open(log, "ab") as sink:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                    return time.monotonic() - t0
            except OSError:
                time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    model = model_dirs.resolve(args.model)
    log = Path(tempfile.mkdtemp()) / "server.log"
    times: dict[str, list[float]] = {"uni": [], "mp": []}
    for r in range(args.repeats):
        for executor in ("mp", "uni"):
            seconds = start_once(model, executor, log)
            times[executor].append(seconds)
            print(f"start {r + 1} {executor}: ready after {seconds:.1f} s", flush=True)
    uni, mp = statistics.median(times["uni"]), statistics.median(times["mp"])
    print(f"median: uni {uni:.1f} s, mp {mp:.1f} s; uni / mp = {uni / mp:.2f}")


if __name__ == "__main__":
    main()
