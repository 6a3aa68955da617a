"""Config (longrecipe.base.config): YAML + overrides into frozen dataclasses; unknown keys name the closest valid
key."""

from __future__ import annotations

import dataclasses

import pytest

from longrecipe.base import config as C
from longrecipe.train.config import RunConfig


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides(tmp_path):
    p = write(tmp_path, "out: x\ntrain:\n  steps: 5\n  lr: 1\n")
    cfg = C.load(RunConfig, p, ["train.batch_size=3", "model.path=/m", "train.lr=2e-4", "data.max_gap=7"])
    assert cfg.out == "x" and cfg.train.steps == 5 and cfg.train.batch_size == 3
    assert cfg.train.lr == 2e-4 and isinstance(cfg.train.lr, float) and cfg.model.path == "/m"
    assert cfg.data.max_gap == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 1  # type: ignore[misc]


def test_int_in_yaml_becomes_float():
    assert C.load(RunConfig, None, ["train.lr=1"]).train.lr == 1.0


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(C.ConfigError, match=r"unknown config key 'train.stpes'.*did you mean 'steps'"):
        C.load(RunConfig, None, ["train.stpes=3"])
    with pytest.raises(C.ConfigError, match="did you mean 'model'"):
        C.load(RunConfig, write(tmp_path, "modle:\n  path: x\n"))


def test_bad_values(tmp_path):
    with pytest.raises(C.ConfigError, match="train.steps: expected int"):
        C.load(RunConfig, None, ["train.steps=abc"])
    with pytest.raises(C.ConfigError, match="train.method: 'lora' is not one of"):
        C.load(RunConfig, None, ["train.method=lora"])
    with pytest.raises(C.ConfigError, match="not of the form"):
        C.load(RunConfig, None, ["train.steps"])


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = write(tmp_path, "out: x\ntrain:\n  steps: [1, 2\n  lr: 3\n")
    with pytest.raises(C.ConfigError, match=r"malformed YAML in .*c.yaml line \d+"):
        C.load(RunConfig, p)
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load(RunConfig, tmp_path / "missing.yaml")
    with pytest.raises(C.ConfigError, match="must be a mapping"):
        C.load(RunConfig, write(tmp_path, "- a\n- b\n"))


def test_save_round_trip(tmp_path):
    cfg = C.load(RunConfig, None, ["train.steps=9", "rope.method=yarn"])
    C.save(cfg, tmp_path / "resolved.yaml")
    again = C.load(RunConfig, tmp_path / "resolved.yaml")
    assert again == cfg


def test_every_shipped_config_loads():
    from helpers import ROOT

    files = sorted((ROOT / "train" / "configs").glob("*.yaml"))
    assert len(files) >= 8
    for f in files:
        first = f.read_text().splitlines()[0]
        assert first.startswith("# longrecipe train --config train/configs/" + f.name), f
        C.load(RunConfig, f).validate()
