"""Shared fixtures: the committed tiny base model, one-process training runs made once per session, the small QA
files of RULER's QA tasks, and the test tiers (`unit` for every test not marked `integration`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import SMALL, TRAIN_CONFIG, cli
from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)
# No property test may fail because the machine is busy: no per-example deadline, no "data generation too slow".
settings.register_profile("longrecipe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("longrecipe")


def pytest_collection_modifyitems(config, items):
    """The tiers: a test is `integration` when it is marked so (real processes, engines, servers, installs, or long
    training/evaluation); every other test is `unit` (`make test-fast` runs those: `pytest -m unit`)."""
    for item in items:
        if item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from longrecipe.base import model_dirs

    return model_dirs.resolve("tiny")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from longrecipe.base.inference import load_model

    return load_model(tiny_dir, device="cpu")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`trained(*overrides)`: the output folder of one in-process `longrecipe train` of the tiny setup
    (helpers.TRAIN_CONFIG, helpers.SMALL + overrides), made once per session for each distinct list of overrides.
    Several tests compare against the same one-process reference run; they read it and never write into it."""
    made: dict[tuple[tuple[str, str], ...], Path] = {}

    def run(*overrides: str) -> Path:
        settings = dict(o.split("=", 1) for o in (*SMALL, *overrides))  # a later override wins, as in the config
        key = tuple(sorted(settings.items()))
        if key not in made:
            out = tmp_path_factory.mktemp("trained") / "run"
            res = cli("train", "--config", TRAIN_CONFIG, f"out={out}", *(f"{k}={v}" for k, v in key))
            assert res.returncode == 0, res.stderr[-2000:]
            made[key] = out
        return made[key]

    return run


@pytest.fixture(scope="session")
def qa_files(tmp_path_factory) -> dict[str, str]:
    """Small SQuAD-v2 and HotpotQA files in the original formats (written here; nothing is downloaded)."""
    d = tmp_path_factory.mktemp("qa")
    paragraphs = [{"context": f"The river {name} flows through the valley of {place}. Its water is {color}.",
                   "qas": [{"question": f"Which valley does the river {name} flow through?", "is_impossible": False,
                            "answers": [{"text": place}, {"text": f"the valley of {place}"}]},
                           {"question": "Who owns the moon?", "is_impossible": True, "answers": []}]}
                  for name, place, color in [("Alder", "Brenn", "green"), ("Cold", "Dunmore", "grey"),
                                             ("Esk", "Farrow", "clear"), ("Glen", "Harrow", "brown"),
                                             ("Isla", "Jura", "blue"), ("Kell", "Lorne", "dark")]]
    squad = {"version": "v2.0", "data": [{"title": "Rivers", "paragraphs": paragraphs[:3]},
                                         {"title": "More rivers", "paragraphs": paragraphs[3:]}]}
    hotpot = [{"_id": str(i), "question": f"Which town is home to both the {a} mill and the {b} bridge?",
               "answer": town, "context": [[f"{a} mill", [f"The {a} mill stands in {town}. ", "It is old."]],
                                           [f"{b} bridge", [f"The {b} bridge crosses the river in {town}."]]]}
              for i, (a, b, town) in enumerate([("Oak", "Stone", "Avebury"), ("Elm", "Iron", "Bexley"),
                                                ("Ash", "Wood", "Corfe")])]
    (d / "squad.json").write_text(json.dumps(squad))
    (d / "hotpot.json").write_text(json.dumps(hotpot))
    return {"qa_1": str(d / "squad.json"), "qa_2": str(d / "hotpot.json")}




# `LONGRECIPE_TEST_TIMES=FILE pytest ...`: every test's wall and CPU seconds (this process + the child processes it
# waited for) into FILE, for benchmarks/test_times.py. CPU seconds hardly move when the machine is busy; wall seconds
# are what CI pays.
_TIMES: dict[str, dict[str, float]] = {}


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not os.environ.get("LONGRECIPE_TEST_TIMES"):
        yield
        return
    import time

    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    _TIMES[item.nodeid] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(_cpu_seconds() - cpu, 2),
                           "tier": "integration" if item.get_closest_marker("integration") else "unit"}


def pytest_sessionfinish(session, exitstatus):
    if path := os.environ.get("LONGRECIPE_TEST_TIMES"):
        Path(path).write_text(json.dumps(_TIMES, indent=0) + "\n")
