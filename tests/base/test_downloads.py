"""Evaluation data in the cache (longrecipe.base.downloads): real downloads from a local HTTP server (the hub's
resolve URLs through HF_ENDPOINT, the reference URLs through a source whose URLs point at the server), the
manifest's checks (a complete copy, a damaged one, an interrupted download), the offline one-liners, `longrecipe
data`, and the suites reading the cached copies without their flags. No test touches the network."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from helpers import cli, essays, one_line_exit_2

from longrecipe.base import downloads as D


class Handler(http.server.SimpleHTTPRequestHandler):
    """Files under the served folder; a path under /drop/ promises 1000 bytes, sends 10 and hangs up (a connection
    lost mid-download); every response names a hub commit, as the hub's resolve URLs do."""

    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        if self.path.startswith("/drop/"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("X-Repo-Commit", "c0ffee")
        super().end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, the paths requested so far)."""
    root = tmp_path / "served"
    root.mkdir()
    seen: list[str] = []
    handler = type("H", (Handler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh cache, offline (as every test runs) unless a test goes `online`."""
    monkeypatch.setenv("LONGRECIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


@pytest.fixture
def online(monkeypatch):
    for var in D.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)


def serve_as(monkeypatch, name: str, base: str, files: dict[str, bytes | str] | None = None, root: Path | None = None,
             pinned: bool = False, prefix: str = "") -> D.Source:
    """Point a source's URLs at the local server (its files saved under `root`), its pins dropped unless `pinned`."""
    src = D.SOURCES[name]
    for rel, data in (files or {}).items():
        (root / prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / prefix / rel).write_bytes(data.encode() if isinstance(data, str) else data)
    remotes = tuple(dataclasses.replace(r, url=f"{base}/{prefix}{r.path}", **({} if pinned else {"sha256": None,
                                                                                                    "size": None}))
                    for r in src.remotes)
    new = dataclasses.replace(src, remotes=remotes, digest=src.digest if pinned else None)
    monkeypatch.setitem(D.SOURCES, name, new)
    return new


def leftovers(cache: Path) -> list[str]:
    """What the data folder holds besides lock files (runlock keeps those once made): no temp folder, ever."""
    data = cache / "data"
    return sorted(p.name for p in data.iterdir() if not p.name.endswith(".lock")) if data.exists() else []


# ---- the cache and its manifest -------------------------------------------------------------------------------------
def test_fetch_downloads_checks_and_then_serves_the_cached_copy(server, cache, online, monkeypatch, qa_files):
    base, root, seen = server
    serve_as(monkeypatch, "squad", base, {"dev-v2.0.json": Path(qa_files["qa_1"]).read_text()}, root)
    path = D.fetch("squad", log=lambda _: None)
    assert path == cache / "data" / "squad"
    assert (path / "dev-v2.0.json").read_text() == Path(qa_files["qa_1"]).read_text()
    manifest = json.loads(D.manifest_path("squad").read_text())
    assert manifest["files"]["dev-v2.0.json"]["sha256"] == D.file_sha256(path / "dev-v2.0.json")
    assert manifest["downloads"][0]["url"] == f"{base}/dev-v2.0.json" and manifest["downloads"][0]["revision"]
    assert manifest["fetched"] and leftovers(cache) == ["squad", "squad.manifest.json"]
    monkeypatch.setenv("LONGRECIPE_OFFLINE", "1")
    assert D.fetch("squad") == path and seen == ["/dev-v2.0.json"]  # the cached copy: no second request
    assert D.local("squad") == str(path / "dev-v2.0.json")


def test_a_damaged_copy_is_one_line_and_pull_fetches_it_again(server, cache, online, monkeypatch, qa_files):
    base, root, _ = server
    serve_as(monkeypatch, "squad", base, {"dev-v2.0.json": Path(qa_files["qa_1"]).read_text()}, root)
    path = D.fetch("squad", log=lambda _: None)
    (path / "dev-v2.0.json").write_text('{"version": "v2.0", "data": []}')  # tampered
    with pytest.raises(D.Damaged) as err:
        D.fetch("squad")
    assert "\n" not in str(err.value) and "damaged" in str(err.value)
    assert "longrecipe data pull squad" in str(err.value) and "--qa-squad" in str(err.value)
    (path / "dev-v2.0.json").unlink()
    with pytest.raises(D.Damaged, match="is missing"):
        D.fetch("squad")
    said: list[str] = []
    assert D.pull("squad", log=said.append) == path and "fetching it again" in said[0]
    assert D.verify("squad") == path


def test_a_pinned_hash_refuses_other_bytes_and_keeps_nothing(server, cache, online, monkeypatch):
    base, root, _ = server
    serve_as(monkeypatch, "squad", base, {"dev-v2.0.json": '{"data": []}'}, root, pinned=True)
    with pytest.raises(ValueError, match="is not the pinned") as err:
        D.fetch("squad", log=lambda _: None)
    assert "\n" not in str(err.value) and leftovers(cache) == []


def test_an_interrupted_download_leaves_no_partial_copy(server, cache, online, monkeypatch, qa_files):
    base, root, _ = server
    good = serve_as(monkeypatch, "hotpotqa", base, {"hotpot_dev_distractor_v1.json":
                                                     Path(qa_files["qa_2"]).read_text()}, root)
    broken = dataclasses.replace(good, remotes=(*good.remotes, D.Remote(f"{base}/drop/more.json", "more.json")))
    monkeypatch.setitem(D.SOURCES, "hotpotqa", broken)  # the first file arrives whole, the second breaks off
    with pytest.raises(D.DownloadFailed) as err:
        D.fetch("hotpotqa", log=lambda _: None)
    assert "\n" not in str(err.value) and "nothing was written" in str(err.value) and "--qa-hotpot" in str(err.value)
    assert leftovers(cache) == []
    monkeypatch.setitem(D.SOURCES, "hotpotqa", good)
    path = D.fetch("hotpotqa", log=lambda _: None)
    monkeypatch.setitem(D.SOURCES, "hotpotqa", broken)
    with pytest.raises(D.DownloadFailed):  # a failed re-fetch keeps the complete copy it was replacing
        D.pull("hotpotqa", force=True, log=lambda _: None)
    assert D.verify("hotpotqa") == path and leftovers(cache) == ["hotpotqa", "hotpotqa.manifest.json"]


def test_offline_without_a_copy_is_one_line_naming_the_flag_and_the_pull(server, cache, monkeypatch):
    base, _, seen = server
    serve_as(monkeypatch, "squad", base)
    with pytest.raises(D.NotCached) as err:
        D.fetch("squad")
    line = str(err.value)
    assert "\n" not in line and "--qa-squad FILE" in line and "`longrecipe data pull squad`" in line
    assert "HF_HUB_OFFLINE=1" in line and seen == []  # offline: not even a try
    res = cli("data", "pull", "squad", env={"LONGRECIPE_OFFLINE": "1", "HF_HUB_OFFLINE": "0"})
    one_line_exit_2(res, "LONGRECIPE_OFFLINE=1", "--qa-squad FILE", "longrecipe data pull squad")
    one_line_exit_2(cli("data", "pull", "squad", "nope"), "unknown dataset 'nope'")
    assert seen == [] and leftovers(cache) == []


def test_data_pull_and_list_through_the_cli(server, cache, online, monkeypatch, qa_files):
    base, root, _ = server
    serve_as(monkeypatch, "squad", base, {"dev-v2.0.json": Path(qa_files["qa_1"]).read_text()}, root)
    res = cli("data", "pull", "squad")
    path = cache / "data" / "squad" / "dev-v2.0.json"
    assert res.returncode == 0 and f"squad: {path}: runs read it by default" in res.stdout, res.stderr
    assert "already cached" in cli("data", "pull", "squad").stdout
    listed = cli("data", "list").stdout
    assert f"{'squad':19} cached at {cache / 'data' / 'squad'} (" in listed
    assert f"{'hotpotqa':19} not pulled" in listed
    assert all(name in listed for name in D.SOURCES)


# ---- the layouts the suites read ----------------------------------------------------------------------------------
def test_babilong_lands_in_the_hub_layout(server, cache, online, monkeypatch):
    base, root, seen = server
    monkeypatch.setenv("HF_ENDPOINT", base)  # the real table's hub URLs, served from here
    hub = root / "datasets" / "RMT-team" / "babilong" / "resolve" / "main"
    for remote in D.SOURCES["babilong"].remotes:
        (hub / remote.path).parent.mkdir(parents=True, exist_ok=True)
        (hub / remote.path).write_text(json.dumps([{"input": "x", "target": "y", "question": remote.path}]))
    path = D.fetch("babilong", log=lambda _: None)
    assert path == D.folder("babilong") and (path / "data" / "qa1" / "4k.json").is_file()
    assert sorted(p.name for p in (path / "data").iterdir()) == ["qa1", "qa2", "qa3", "qa4", "qa5"]
    assert "10M.json" not in {p.name for p in path.rglob("*")} and len(seen) == 45
    manifest = json.loads(D.manifest_path("babilong").read_text())
    assert {d["revision"] for d in manifest["downloads"]} == {"c0ffee"}  # the commit the hub served


def _lb_record(i: int) -> dict:
    return {"input": f"Which town? {i}", "context": f"The mill stands in Avebury. {i} " * 20, "answers": ["Avebury"],
            "length": 100 + 4000 * i, "dataset": "hotpotqa", "language": "en", "all_classes": None, "_id": str(i)}


def test_a_cached_longbench_folder_is_read_without_longbench_dir(server, cache, online, monkeypatch, tmp_path, tok):
    base, root, _ = server
    monkeypatch.setenv("HF_ENDPOINT", base)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        rows = "".join(json.dumps(_lb_record(i)) + "\n" for i in range(3))
        z.writestr("data/hotpotqa.jsonl", rows)
        z.writestr("data/hotpotqa_e.jsonl", rows)
    v2 = [{"_id": str(i), "domain": "d", "sub_domain": "s", "difficulty": "easy", "length": "short",
           "question": "Which?", "choice_A": "a", "choice_B": "b", "choice_C": "c", "choice_D": "d", "answer": "B",
           "context": "text " * 50} for i in range(2)]
    for remote, data in zip(D.SOURCES["longbench"].remotes, (buf.getvalue(), json.dumps(v2).encode())):
        where = root / remote.url.removeprefix(D.HUB + "/")
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(data)
    path = D.fetch("longbench", log=lambda _: None)
    assert sorted(p.name for p in path.iterdir()) == ["hotpotqa.jsonl", "hotpotqa_e.jsonl", "longbench_v2.jsonl"]
    from longrecipe.base import model_dirs
    from longrecipe.evaluate.config import build_config, check_input, suite_options
    from longrecipe.evaluate.runner import _content_hash, run_identity
    from longrecipe.tasks import longbench, longbench_v2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = build_config({"model": "tiny", "out": str(tmp_path / "run"), "suites": ["longbench", "longbench_v2"]})
    check_input(cfg)  # no --longbench-dir: the cached copy passes the suites' checks, offline
    assert suite_options(cfg, longbench.TASK).dir == str(path) == suite_options(cfg, longbench_v2.TASK).dir
    assert run_identity(cfg, model_dirs.resolve("tiny"))["data"]["longbench_dir"] == _content_hash(str(path))
    v1 = longbench.TASK.samples(tok, 256, 0, 0, suite_options(cfg, longbench.TASK))
    v2_samples = longbench_v2.TASK.samples(tok, 256, 0, 0, suite_options(cfg, longbench_v2.TASK))
    assert [s.task for s in v1] == ["hotpotqa"] * 3 and [s.references for s in v2_samples] == [["B"], ["B"]]


def test_longbench_offline_without_a_copy_names_the_flag_and_the_pull():
    from longrecipe.tasks.longbench import TASK, LongBenchOptions

    with pytest.raises(ValueError) as err:
        TASK.check(LongBenchOptions())
    assert "need --longbench-dir" in str(err.value) and "longrecipe data pull longbench" in str(err.value)
    assert "HF_HUB_OFFLINE=1" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def tok():
    from longrecipe.base import model_dirs
    from longrecipe.base.tokenization import load_tokenizer

    return load_tokenizer(model_dirs.resolve("tiny"))


def test_ruler_qa_reads_the_cached_files_without_the_flags(server, cache, online, monkeypatch, qa_files, tok):
    base, root, _ = server
    from longrecipe.evaluate.config import build_config
    from longrecipe.evaluate.runner import _content_hash, run_identity
    from longrecipe.tasks.ruler import TASK, RulerOptions

    serve_as(monkeypatch, "squad", base, {"dev-v2.0.json": Path(qa_files["qa_1"]).read_text()}, root)
    serve_as(monkeypatch, "hotpotqa", base, {"hotpot_dev_distractor_v1.json": Path(qa_files["qa_2"]).read_text()},
             root)
    opts = RulerOptions(tasks=("qa_1", "qa_2"))
    assert (opts.qa_squad, opts.qa_hotpot) == (None, None)
    TASK.check(opts)  # online: fetched here, before a run takes its identity
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    opts = RulerOptions(tasks=("qa_1", "qa_2"))
    squad, hotpot = D.local("squad"), D.local("hotpotqa")
    assert (opts.qa_squad, opts.qa_hotpot) == (squad, hotpot) and squad.startswith(str(cache))
    samples = TASK.samples(tok, 512, 2, 0, opts, log=lambda _: None)
    refs = {(s.task, tuple(s.references)) for s in samples}
    assert ("qa_1", ("Brenn", "the valley of Brenn")) in refs and any(t == "qa_2" for t, _ in refs)
    assert RulerOptions(qa_squad=qa_files["qa_1"]).qa_squad == qa_files["qa_1"]  # a flag's file wins
    # the run identity hashes the fetched file exactly as it hashes a --qa-squad file
    cfg = build_config({"model": "tiny", "out": str(cache / "run"), "suites": ["ruler"]})
    from longrecipe.base import model_dirs

    data = run_identity(cfg, model_dirs.resolve("tiny"))["data"]
    assert data["qa_squad"] == _content_hash(squad) and data["qa_hotpot"] == _content_hash(hotpot)


def test_ruler_default_tasks_offline_skip_qa_as_before_and_named_ones_say_how(server, monkeypatch):
    base, _, seen = server
    from longrecipe.tasks.ruler import TASK, RulerOptions

    serve_as(monkeypatch, "squad", base)
    assert TASK.sources(RulerOptions()) == {"qa_1": None, "qa_2": None} and seen == []
    with pytest.raises(D.NotCached) as err:
        TASK.check(RulerOptions(tasks=("niah_single_1", "qa_1")))
    assert "--qa-squad FILE" in str(err.value) and "longrecipe data pull squad" in str(err.value)


def test_ruler_default_tasks_online_try_a_failing_download_once(server, online, monkeypatch, cache):
    base, root, seen = server
    from longrecipe.tasks.ruler import TASK, RulerOptions

    for name in ("squad", "hotpotqa"):
        src = D.SOURCES[name]
        monkeypatch.setitem(D.SOURCES, name, dataclasses.replace(src, remotes=(
            dataclasses.replace(src.remotes[0], url=f"{base}/drop/{name}.json"),)))
    said: list[str] = []
    assert TASK.sources(RulerOptions(), log=said.append) == {"qa_1": None, "qa_2": None}
    assert TASK.sources(RulerOptions()) == {"qa_1": None, "qa_2": None}
    assert sorted(seen) == ["/drop/hotpotqa.json", "/drop/squad.json"] and leftovers(cache) == []
    assert D.unavailable("squad").startswith("could not download squad")


@pytest.mark.skipif(essays() is None, reason="no essay folder (CI sets LONGRECIPE_ESSAYS_DIR)")
def test_the_pinned_essays_digest_is_the_shared_copy_and_the_name_reads_it(server, cache, online, monkeypatch):
    base, root, _ = server
    shared = Path(essays())
    files = {f"{name}.txt": (shared / f"{name}.txt").read_bytes() for name in D.ESSAYS}
    serve_as(monkeypatch, "paul_graham_essays", base, files, root, pinned=True)
    res = cli("data", "pull", "paul_graham_essays")
    path = cache / "data" / "paul_graham_essays"
    assert res.returncode == 0 and f"pass --essay-dir paul_graham_essays (or --essay-dir {path})" in res.stdout
    from longrecipe.base import corpus
    from longrecipe.tasks.niah import NiahOptions
    from longrecipe.tasks.ruler import RulerOptions

    assert RulerOptions(essay_dir="paul_graham_essays").essay_dir == str(path) == NiahOptions(
        essay_dir="paul_graham_essays").essay_dir
    assert corpus.essay_text("paul_graham_essays") == corpus.essay_text(str(shared))
    corpus.essay_text.cache_clear()  # keyed by the bare name: no other test may see this cache's copy
    assert RulerOptions().essay_dir is None  # the default haystack stays the built-in text
    (path / "aord.txt").write_text("changed")
    with pytest.raises(D.Damaged):
        D.use("paul_graham_essays", "paul_graham_essays", required=True)
