"""Results schema v1: round trip, one-line errors, atomic writes."""

from __future__ import annotations

import json
import os

import pytest

from longrecipe.base import io, schema


def sample_results() -> schema.Results:
    run = schema.run_info("longrecipe eval --model tiny", {"a": 1}, seed=3)
    rows = (schema.ScoreRow("ruler", "niah_single_1", "string_match_all", 87.5, 1, 256, None, 8, 0),
            schema.ScoreRow("niah", "needle", "substring", 100.0, 1, 512, 0.25, 1, 0))
    return schema.Results(run=run, model=schema.ModelInfo("tiny", {"rope_type": "default", "rope_theta": 1e4}, 256),
                          backend="hf", scores=rows)


def test_round_trip(tmp_path):
    res = sample_results()
    res.save(tmp_path / "results.json")
    again = schema.Results.load(tmp_path / "results.json")
    assert again == res
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["schema_version"] == 1 and data["scores"][0]["context_length"] == 256
    assert set(data["run"]) >= {"id", "git_sha", "git_dirty", "command", "config", "versions", "seed", "hardware"}
    assert "torch" in data["run"]["versions"]


def test_bad_files(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("{\n  \"schema_version\": 1,\n  oops\n}")
    with pytest.raises(schema.SchemaError, match="malformed JSON at line 3"):
        schema.Results.load(p)
    p.write_text(json.dumps({"schema_version": 2}))
    with pytest.raises(schema.SchemaError, match="schema_version 2"):
        schema.Results.load(p)
    p.write_text(json.dumps({"schema_version": 1, "run": {}}))
    with pytest.raises(schema.SchemaError, match="r.json: field 'scores' must be a list"):
        schema.Results.load(p)


def test_jsonl(tmp_path):
    p = tmp_path / "preds.jsonl"
    schema.append_jsonl(p, {"i": 1})
    schema.append_jsonl(p, {"i": 2})
    assert schema.read_jsonl(p) == [{"i": 1}, {"i": 2}]
    with open(p, "a") as f:
        f.write('{"i": 3\n')
    with pytest.raises(schema.SchemaError, match=r"preds.jsonl:3: malformed JSON line"):
        schema.read_jsonl(p)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "a.json"
    io.write_json(p, {"v": 1})

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        io.write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    d = tmp_path / "model"
    with io.atomic_dir(d) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError), io.atomic_dir(d) as tmp:
        (tmp / "x").write_text("2")
        raise RuntimeError("crash mid-write")
    assert (d / "x").read_text() == "1" and len(list(tmp_path.iterdir())) == 1


def test_atomic_writes_get_the_modes_plain_writes_would(tmp_path):
    """Temp files are created 0600 and temp folders 0700; a result file or model folder written through them must
    come out as open()/mkdir() would make it (the process umask applied), and a replaced file keeps its own mode."""
    io.write_json(tmp_path / "new.json", {"v": 1})
    (tmp_path / "plain.json").write_text("{}")
    with io.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "x").write_text("1")
    (tmp_path / "plain").mkdir()
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    io.write_json(kept, {"v": 2})
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "new.json") == mode(tmp_path / "plain.json")
    assert mode(tmp_path / "model") == mode(tmp_path / "plain")
    umask = os.umask(0o022)
    os.umask(umask)
    if umask == 0o022:  # the usual umask: the modes are group/world readable
        assert mode(tmp_path / "new.json") == 0o644 and mode(tmp_path / "model") == 0o755
    assert mode(kept) == 0o640 and json.loads(kept.read_text()) == {"v": 2}
