"""Config: YAML + overrides into frozen dataclasses; unknown keys name the closest valid key."""

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
    from conftest import ROOT

    files = sorted((ROOT / "train" / "configs").glob("*.yaml"))
    assert len(files) >= 8
    for f in files:
        first = f.read_text().splitlines()[0]
        assert first.startswith("# longrecipe train --config train/configs/" + f.name), f
        C.load(RunConfig, f).validate()


@pytest.mark.parametrize("name", ["smollm2_32k_flt.yaml", "smollm2_32k_longrecipe.yaml"])
def test_smollm2_study_configs_validate_as_run_builds_them_and_fit_one_gpu(name):
    """The real-model study configs (#18's GPU step): the eval section `run` builds from them is a valid eval config
    (11 non-QA RULER tasks, 8k-32k, chat template), and the memory plan fits one 80 GiB GPU."""
    from conftest import ROOT, run_cli

    from longrecipe.base import models
    from longrecipe.evaluate.runner import validate
    from longrecipe.recipes.run import eval_config, eval_lengths

    try:
        models.resolve("smollm2-135m")
    except FileNotFoundError as err:
        pytest.skip(f"SmolLM2 could not be had here: {err}")
    path = ROOT / "train" / "configs" / name
    cfg = C.load(RunConfig, path).validate()
    ecfg = eval_config(cfg, eval_lengths(cfg), cfg.model.path, "base")
    validate(ecfg)
    assert ecfg.lengths == (8192, 16384, 32768) and ecfg.chat_template and len(ecfg.options["ruler_tasks"]) == 11
    assert cfg.train.target_length == 32768 and cfg.train.train_length == (32768 if "flt" in name else 9830)
    res = run_cli("train", "--plan", str(path), "--gpus", "1", "--gpu-mem", "80GiB")
    assert res.returncode == 0 and "fits:" in res.stdout, res.stdout + res.stderr
