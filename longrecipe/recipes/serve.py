"""`longrecipe serve MODEL`: vLLM's OpenAI server for a model exactly as transformers computes it at N tokens.

Why a command: how the user starts the server decides the scores (a RoPE cache shorter than `--max-model-len`
answers empty strings or garbage past it; evaluate/serving.py). This starts the server with the overrides the model
needs, prints the command it ran (`--print-only` prints it and stops, for those who start servers themselves),
waits until it answers, then probes parity: a few passkey prompts at N through the server and through transformers
on CPU (the engine-free reference), and says how many greedy answers agree. Ctrl-C (or SIGTERM) stops the server
and its workers and exits 0. A port in use, a model vLLM cannot hold at N, a server that exits before it is ready or
never answers: one line, exit 2 (a server that exits later: one line, exit 1).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from longrecipe.base import interrupt, model_dirs
from longrecipe.evaluate import serving

PROBE_TASK = "passkey"  # its answers are digits: a parity difference is never a matter of formatting


@dataclass(frozen=True)
class ServeOptions:
    model: str
    max_model_len: int | None = None
    port: int = 8000
    host: str = "127.0.0.1"
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    served_model_name: str | None = None
    print_only: bool = False
    probe_samples: int | None = None  # None: 4 on CPU, 0 on GPU (transformers on CPU at N tokens would be slow)
    ready_timeout: float = 900.0
    log: str | None = None


def check(opts: ServeOptions) -> None:
    """The options' ranges, before anything starts (one line each)."""
    if opts.max_model_len is not None and opts.max_model_len < 1:
        raise ValueError(f"--max-model-len {opts.max_model_len}: must be at least 1")
    if not 1 <= opts.port <= 65535:
        raise ValueError(f"--port {opts.port}: must be in 1..65535")
    if opts.tensor_parallel_size < 1:
        raise ValueError(f"--tensor-parallel-size {opts.tensor_parallel_size}: must be at least 1")
    if opts.probe_samples is not None and opts.probe_samples < 0:
        raise ValueError(f"--probe-samples {opts.probe_samples}: must be >= 0")
    if opts.ready_timeout <= 0:
        raise ValueError(f"--ready-timeout {opts.ready_timeout:g}: must be > 0")


def _port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a closed connection's
        try:  # TIME_WAIT does not hold the port, a listening server does
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is in use (another server?): choose another --port") from None
            raise ValueError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None


def _last_line(path: Path) -> str:
    lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1][-300:] if lines else "(no output)"


def wait_ready(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> float:
    """Seconds until the server lists its models; one line if it exits first or never answers."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise ValueError(f"the server exited (code {proc.returncode}) before it was ready: {_last_line(log)} "
                             f"(its log: {log})")
        try:
            with urllib.request.urlopen(url + "/models", timeout=5) as res:
                if res.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(1)
    raise ValueError(f"the server did not answer within {timeout:.0f} s (--ready-timeout); its log: {log}")


def stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """The server's whole process group (its engine and workers): SIGTERM, up to `grace` seconds for the server to
    stop them, then SIGKILL to whatever of the group is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever of the group is left (its engine and workers, or a server that exited on its own)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def probe(model_dir: Path, url: str, served: str, length: int, samples: int) -> tuple[int, int]:
    """(agreeing, asked): greedy passkey answers at `length` through the server and through transformers."""
    from longrecipe.evaluate.hf_backend import HFBackend
    from longrecipe.evaluate.openai_backend import OpenAIBackend
    from longrecipe.evaluate.runner import request
    from longrecipe.tasks.suites import REGISTRY

    task = REGISTRY[PROBE_TASK]
    server = OpenAIBackend(url, served, str(model_dir))
    rows = task.samples(server.tokenizer, length, samples, 0, task.Options())
    requests = [request(s) for s in rows]
    served_answers = server.generate(requests)
    local = HFBackend(str(model_dir), device="cpu", dtype="float32").generate(requests)
    return sum(a.strip() == b.strip() for a, b in zip(served_answers, local)), len(requests)


def serve(opts: ServeOptions) -> int:
    check(opts)
    model_dir = model_dirs.resolve(opts.model)
    config = json.loads((model_dir / "config.json").read_text())
    length = opts.max_model_len or int(config["max_position_embeddings"])
    cpu = not _cuda()
    served = opts.served_model_name or Path(opts.model).name
    env, argv = serving.server_command(model_dir, length, port=opts.port, host=opts.host, dtype=opts.dtype,
                                       tensor_parallel_size=opts.tensor_parallel_size, served_name=served, cpu=cpu)
    if not opts.print_only:
        _port_free(opts.host, opts.port)
    print(serving.shell_line(env, argv), flush=True)
    if opts.print_only:
        return 0
    own = f"longrecipe-serve-{os.getuid()}-{opts.port}.log"  # this user's, per port
    log = Path(opts.log) if opts.log else Path(tempfile.gettempdir()) / own
    url = f"http://{opts.host}:{opts.port}/v1"
    samples = (4 if cpu else 0) if opts.probe_samples is None else opts.probe_samples
    parent = os.getpid()
    with open(log, "ab") as sink:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True,  # its own group: Ctrl-C reaches us, we stop all of it
                                preexec_fn=lambda: _end_with_parent(parent))
    print(f"started the server: pid {proc.pid} (its process group), log {log}", flush=True)
    try:
        seconds = wait_ready(proc, url, opts.ready_timeout, log)
        print(f"serving {served} at {url} (max-model-len {length}, ready in {seconds:.0f} s; log: {log}); "
              f"Ctrl-C stops it", flush=True)
        if samples:
            same, asked = probe(model_dir, url, served, length, samples)
            verdict = "agree" if same == asked else "DIFFER: check the dtype and the server's flags"
            print(f"parity probe: {same} of {asked} greedy {PROBE_TASK} answers at {length} tokens through the "
                  f"server and through transformers (float32, CPU) {verdict}", flush=True)
        code = proc.wait()
        print(f"longrecipe serve: the server exited (code {code}): {_last_line(log)} (its log: {log})",
              file=sys.stderr)
        return 1
    except interrupt.Interrupted as why:
        stop(proc)
        print(f"\nstopped the server ({why}); port {opts.port} is free", flush=True)
        return 0
    finally:
        stop(proc)


_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None  # resolved before any fork


def _end_with_parent(parent: int) -> None:
    """In the server's process, before it starts: SIGTERM to it when this command dies, even by kill -9 (Linux's
    PR_SET_PDEATHSIG; its engine stops with it), so that no server outlives the command that owns it. A parent
    already gone before the setting took hold: the child ends at once."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
