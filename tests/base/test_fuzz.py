"""Property tests: random keys, types and values never produce a traceback from the config layer or from the
results loader, the report tables and the gate; they load, or they fail with the one-line error type."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longrecipe.base import config as C
from longrecipe.base.schema import Results, SchemaError
from longrecipe.reports.check import compare
from longrecipe.reports.load import ReportError, frame
from longrecipe.train.config import RunConfig


def _keys(cls, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += _keys(type(default), f"{prefix}{f.name}.")
        out.append(f"{prefix}{f.name}")
    return out

KEYS = _keys(RunConfig)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["nan", "-inf", "1e-3", "2.5", "[1, 2]", "{a: 1}", "~",
                                                           "ntk-at-target", "flt", "a,b", "0", "-1", ""]))

values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=3), max_leaves=6)

key_text = st.one_of(st.sampled_from(KEYS), st.text(max_size=15), st.sampled_from([k + ".x" for k in KEYS[:5]]))

def _yaml_value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)

class _maybe:
    """Context manager: a ConfigError is an accepted outcome, anything else propagates."""

    def __enter__(self):
        return self

    def __exit__(self, tp, err, tb):
        return tp is not None and issubclass(tp, C.ConfigError)

ROW_FIELDS = {"suite": st.sampled_from(["ruler", "niah", "passkey", "general", "x"]),
              "task": st.sampled_from(["average", "summary", "passkey", "needle", "t"]),
              "metric": st.sampled_from(["mean_over_tasks", "avg", "exact_match", "perplexity", "m"]),
              "value": st.floats(-1e6, 1e6) | st.integers(-100, 100),
              "context_length": st.none() | st.integers(1, 10**6), "depth": st.none() | st.floats(0, 100),
              "n": st.integers(0, 100), "n_null": st.integers(0, 5), "task_version": st.integers(0, 3) | st.text()}

valid_row = st.fixed_dictionaries({k: v for k, v in ROW_FIELDS.items() if k in ("suite", "task", "metric", "value")},
                                  optional={k: v for k, v in ROW_FIELDS.items()
                                            if k not in ("suite", "task", "metric", "value")})

any_row = valid_row | st.dictionaries(st.sampled_from(list(ROW_FIELDS) + ["bad"]), values, max_size=6) | values

def _doc(scores, run=None) -> dict:
    run = run if run is not None else {"id": "r", "created": "c", "command": "x", "git_sha": None, "git_dirty": None,
                                       "config": {}, "versions": {}, "seed": None, "hardware": {}}
    return {"schema_version": 1, "run": run, "model": {"path": "m"}, "backend": "hf", "scores": scores}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(key_text, values), max_size=4))
def test_config_overrides_never_crash(pairs):
    overrides = [f"{k}={_yaml_value(v)}" for k, v in pairs]
    try:
        cfg = C.load(RunConfig, None, overrides).validate()
    except C.ConfigError:
        return
    C.check(cfg)  # what loaded is in range
    assert C.load(RunConfig, None, []).validate() is not None


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS[:12]) | st.text(max_size=8), values, max_size=5))
def test_config_documents_never_crash(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    with _maybe():
        C.load(RunConfig, path).validate()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(any_row, max_size=4).map(_doc), values.map(lambda v: _doc([], v)), values,
                 st.dictionaries(st.sampled_from(["schema_version", "run", "model", "backend", "scores"]), values)))
def test_results_loader_never_crashes(data):
    try:
        Results.from_dict(data, "f.json")
    except SchemaError as err:
        assert str(err).startswith("f.json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(valid_row, max_size=6), st.lists(valid_row, max_size=6), st.floats(0, 5))
def test_reports_and_gate_on_valid_files_never_crash(tmp_path, base_rows, run_rows, tolerance):
    paths = []
    for name, rows in (("base", base_rows), ("run", run_rows)):
        p = tmp_path / name / "results.json"
        p.parent.mkdir(exist_ok=True)
        p.write_text(json.dumps(_doc(rows)))
        paths.append(p)
    try:
        frame(paths)
    except ReportError as err:
        assert "no scores" in str(err)
    base, run = (Results.load(p).to_dict() for p in paths)
    compare(base, run, tolerance, per_task=True)
    compare(base, run, tolerance, per_task=False)
