"""The token store: the same documents and rows as in-memory tokenization, a build that survives kill -9, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, TRAIN_CONFIG, cli

from longrecipe.base import corpus
from longrecipe.train import data as D
from longrecipe.train import store as S
from longrecipe.train.recipe import load_config


def _corpus(path: Path, docs: int, seed: int = 0, spans: bool = False) -> Path:
    """A JSONL corpus of shuffled Python-corpus paragraphs (some rows with loss_spans when `spans`)."""
    paras = list(corpus.paragraphs())
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for i in range(docs):
            text = "\n\n".join(paras[j] for j in rng.integers(0, len(paras), int(rng.integers(40, 100))))
            row = {"text": text}
            if spans and i % 3 == 0:
                row["loss_spans"] = [[10, 200], [len(text) // 2, len(text), 300, 400]]  # the second needs 300-400
            f.write(json.dumps(row) + "\n")
            if i == 2:
                f.write("\n")  # a blank line is skipped, as in-memory loading skips it
    return path

def _as_parquet(src: Path, out: Path, files: int) -> Path:
    """The JSONL corpus's rows as `files` Parquet shards in a folder (the layout of hub datasets)."""
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet sources need pyarrow (the eval extra installs it)")
    import pyarrow as pa

    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    for r in rows:
        r.setdefault("loss_spans", None)
    out.mkdir()
    for k in range(files):
        part = rows[k * len(rows) // files:(k + 1) * len(rows) // files]
        pq.write_table(pa.Table.from_pylist(part), out / f"train-{k:05d}-of-{files:05d}.parquet", row_group_size=3)
    return out

def _same_store(a: Path, b: Path) -> None:
    sa, sb = S.TokenStore(a), S.TokenStore(b)
    assert len(sa) == len(sb) > 0
    for name in S.FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_store_documents_equal_in_memory_tokenization(tmp_path, tiny):
    _, tok = tiny
    src = _corpus(tmp_path / "c.jsonl", 12, spans=True)
    store = S.TokenStore(S.build(src, tok, tmp_path / "store", progress=False), tok)
    ref = [D.tokenize_document(tok, t, s) for t, s in corpus.load_documents(str(src))]
    assert len(store) == len(ref) == 12
    for a, b in zip(store, ref):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.starts, b.starts)
        assert np.array_equal(a.loss, b.loss if b.loss is not None else np.ones(len(b.ids), bool))
        assert (a.deps is None and b.deps is None) or np.array_equal(a.deps, b.deps)
    assert np.array_equal(store.lengths, [len(d.ids) for d in ref])


@pytest.mark.parametrize("overrides", [["train.method=longrecipe"], ["train.method=pose"], ["train.method=randpos"],
                                       ["train.method=flt", "train.train_length=2048"],
                                       ["data.selection=impactful"], ["data.selection=random"]])
def test_rows_from_the_store_equal_rows_from_memory(tmp_path, tiny, overrides):
    _, tok = tiny
    src = _corpus(tmp_path / "c.jsonl", 8, spans=True)
    cfg = load_config(TRAIN_CONFIG, [f"data.source={src}", *overrides])
    path = S.build(src, tok, tmp_path / "store", progress=False)
    mem, lazy = D.build(tok, cfg.data, cfg.train), D.build(tok, cfg.data, cfg.train, path)
    for step in range(4):
        a, b = mem.batch(0, step, 0, 0, 2), lazy.batch(0, step, 0, 0, 2)
        assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


@pytest.mark.integration
def test_a_killed_build_resumes_to_the_same_store(tmp_path, tiny):
    """kill -9 a `longrecipe tokenize` mid-build (after its first commit), re-run it: the files are byte-identical
    to an uninterrupted build's, and no document is lost or repeated."""
    _, tok = tiny
    src = _corpus(tmp_path / "c.jsonl", 1200, seed=3)
    ref = S.build(src, tok, tmp_path / "ref", commit_every=256, progress=False)
    out = tmp_path / "killed"
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "tokenize", str(src), "--model", "tiny", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not (out / S.META).is_file():
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    meta = json.loads((out / S.META).read_text())
    assert not meta["complete"] and 0 < meta["docs"] < 1200, "the build finished (or never committed) before the kill"
    res = cli("tokenize", str(src), "--model", "tiny", "--out", str(out), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1200 documents" in res.stdout
    for name in S.FILES:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_training_reads_its_jsonl_through_a_token_store(tmp_path):
    src = _corpus(tmp_path / "c.jsonl", 8)
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train.steps=2", "train.batch_size=2", "train.threads=1", "train.save_every=0"]
    res = cli("train", "--config", TRAIN_CONFIG, f"out={a}", f"data.source={src}", *common)
    assert res.returncode == 0, res.stderr[-2000:]
    assert S.TokenStore(a / "token_store").meta["docs"] == 8
    res = cli("train", "--config", TRAIN_CONFIG, f"out={b}", f"data.source={a / 'token_store'}", *common)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (b / "token_store").exists()
    losses = [[json.loads(x)["loss"] for x in (o / "train_log.jsonl").read_text().splitlines()] for o in (a, b)]
    assert losses[0] == losses[1]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny):
    _, tok = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    res = cli("tokenize", str(bad), "--model", "tiny", "--out", str(tmp_path / "s"))
    assert res.returncode == 2 and "bad.jsonl:2" in res.stderr and not (tmp_path / "s").exists()
    res = cli("train", "--config", TRAIN_CONFIG, f"out={tmp_path / 'r'}", f"data.source={bad}")
    assert res.returncode == 2 and "bad.jsonl:2" in res.stderr and not (tmp_path / "r").exists()
    src = _corpus(tmp_path / "c.jsonl", 2)
    S.build(src, tok, tmp_path / "st", progress=False)
    with open(src, "a") as f:
        f.write(json.dumps({"text": "one more document."}) + "\n")
    with pytest.raises(ValueError, match="another source"):
        S.build(src, tok, tmp_path / "st", progress=False)
    meta = json.loads((tmp_path / "st" / S.META).read_text())
    (tmp_path / "st" / S.META).write_text(json.dumps({**meta, "complete": False}))
    res = cli("train", "--config", TRAIN_CONFIG, f"out={tmp_path / 'r2'}", f"data.source={tmp_path / 'st'}")
    assert res.returncode == 2 and "incomplete" in res.stderr and not (tmp_path / "r2").exists()


def test_parquet_and_hub_sources_give_the_jsonl_store(tmp_path, tiny):
    _, tok = tiny
    src = _corpus(tmp_path / "c.jsonl", 14, spans=True)
    ref = S.build(src, tok, tmp_path / "ref", progress=False)
    shards = _as_parquet(src, tmp_path / "shards", 3)
    S.validate(str(shards))
    _same_store(ref, S.build(shards, tok, tmp_path / "from_parquet", commit_every=4, progress=False))
    one = shards / "train-00001-of-00003.parquet"
    assert len(S.TokenStore(S.build(one, tok, tmp_path / "one_file", progress=False))) == 5
    # hub:NAME goes through datasets.load_dataset(NAME, streaming=True); a local dataset folder is read by the
    # same call offline (a hub id reads the local cache)
    pytest.importorskip("datasets", reason="hub sources need the datasets package (the eval extra installs it)")
    _same_store(ref, S.build(f"hub:{shards}", tok, tmp_path / "from_hub", commit_every=4, progress=False))
    assert [t for t, _ in corpus.load_documents(str(shards))] == [t for t, _ in corpus.load_documents(str(src))]


def test_an_interrupted_parquet_build_resumes_to_the_same_store(tmp_path, tiny, monkeypatch):
    _, tok = tiny
    shards = _as_parquet(_corpus(tmp_path / "c.jsonl", 14), tmp_path / "shards", 2)
    ref = S.build(shards, tok, tmp_path / "ref", progress=False)
    real, seen = D.tokenize_document, []

    def dying(*args):  # the build dies on the 11th document, after its commits at 4 and 8
        seen.append(1)
        if len(seen) == 11:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(D, "tokenize_document", dying)
    with pytest.raises(KeyboardInterrupt):
        S.build(shards, tok, tmp_path / "cut", commit_every=4, progress=False)
    meta = json.loads((tmp_path / "cut" / S.META).read_text())
    assert meta["docs"] == 8 and meta["line"] == 8 and not meta["complete"]
    monkeypatch.setattr(D, "tokenize_document", real)
    _same_store(ref, S.build(shards, tok, tmp_path / "cut", commit_every=4, progress=False))


def test_a_store_of_an_older_format_is_refused_by_name(tmp_path, tiny):
    """A store written by an older longrecipe (format version 1, before answers named their needles) is refused with
    its version in the message, by the build and by the reader, and is left as it was."""
    _, tok = tiny
    src = _corpus(tmp_path / "c.jsonl", 3)
    path = S.build(src, tok, tmp_path / "store", progress=False)
    meta = json.loads((path / S.META).read_text())
    (path / S.META).write_text(json.dumps({**meta, "version": 1}))
    before = (path / S.META).read_text()
    for call in (lambda: S.build(src, tok, path, progress=False), lambda: S.TokenStore(path, tok)):
        with pytest.raises(ValueError, match="format version 1"):
            call()
    assert (path / S.META).read_text() == before
