"""HELMET's JSON KV (tasks/json_kv.py) against its definition (docs/notes/helmet_spec.md, section 1): the prompt
string, the context as `JSON data:` + json.dumps(indent=4), demonstrations from the same object, the gold pair at
depths 0 ... 1, the most pairs that fit, and the substring exact match after SQuAD normalisation, by hand."""

from __future__ import annotations

import json
import random
import re

import pytest
from helpers import cli

from longrecipe.tasks import json_kv
from longrecipe.tasks.base import Sample
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.suites import REGISTRY

K1, V1 = "54d3a66f-7dfb-46a7-9526-3d78097fdfd4", "e19f64f7-7f3d-47ec-97ae-898caf9493be"
K2, V2 = "285919b6-6b72-4299-9c63-c57e591a67bc", "c2b827b1-8e87-4ade-be8f-9e556a26a314"
K3, V3 = "0b423716-0000-4000-8000-000000000000", "d5d022b9-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    return load_tokenizer(tiny_dir)


def test_the_prompt_is_helmets_template_with_two_demonstrations():
    prompt = json_kv.render([(K1, V1), (K2, V2), (K3, V3)], gold=0, demos=[1, 2])
    assert prompt == (
        "JSON data:\n{\n"
        f'    "{K1}": "{V1}",\n    "{K2}": "{V2}",\n    "{K3}": "{V3}"\n'
        "}\n\nExtract the value corresponding to the specified key in the JSON object below.\n\n"
        f"Key: {K2}\nCorresponding value: {V2}\n\n"
        f"Key: {K3}\nCorresponding value: {V3}\n\n"
        f"Key: {K1}\nCorresponding value:")
    no_shots = json_kv.render([(K1, V1)], gold=0, demos=[])
    assert no_shots.endswith("object below.\n\nKey: " + K1 + "\nCorresponding value:")


def test_uuids_are_version_4_and_reproducible():
    a = [json_kv.uuid4(random.Random(7)) for _ in range(3)]
    assert len(set(a)) == 1  # the same seed, the same id
    ids = [json_kv.uuid4(random.Random(i)) for i in range(200)]
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u) for u in ids)


def test_samples_hold_the_most_pairs_that_fit_with_the_gold_pair_at_each_depth(tok):
    length = 1024
    budget = length - json_kv.MAX_NEW_TOKENS
    rows = json_kv.generate(tok, length, 6, seed=3)
    for i, row in enumerate(rows):
        prompt = row["input"]
        assert count_tokens(tok, prompt) == row["length"] <= budget
        obj = json.loads(prompt.split("\n", 1)[1].split("\n}\n", 1)[0] + "\n}")
        keys = list(obj)
        assert len(keys) == row["pairs"] >= 3
        question = prompt.rsplit("Key: ", 1)[1].split("\n")[0]
        assert obj[question] == row["outputs"][0]
        assert keys.index(question) == round(json_kv.DEPTHS[i] * (len(keys) - 1)) and row["depth"] == json_kv.DEPTHS[i]
        shown = re.findall(r"Key: (\S+)\nCorresponding value: (\S+)", prompt)
        assert len(shown) == 2 and all(obj[k] == v and k != question for k, v in shown)  # from the same object
    # one pair more does not fit: the object is as large as the length allows
    pool = [(json_kv.uuid4(random.Random(2 * j)), json_kv.uuid4(random.Random(2 * j + 1))) for j in range(80)]
    prompt, k, gold = json_kv.fit(tok, pool, budget, 0.4, 11, 2)
    assert count_tokens(tok, prompt) <= budget
    g, demos = json_kv._layout(k + 1, 0.4, 11, 2)
    assert count_tokens(tok, json_kv.render(pool[: k + 1], g, demos)) > budget


def test_a_length_that_cannot_hold_three_pairs_is_one_clear_error(tok):
    with pytest.raises(ValueError, match="json_kv: length 512 cannot hold the prompt with 3 pairs"):
        json_kv.generate(tok, 512, 1)


def test_substring_exact_match_by_hand():
    score = json_kv.substring_exact_match
    assert score(f"Corresponding value: {V1}", V1) == 1.0
    assert score(V1.upper() + " is the value.", V1) == 1.0  # lower-cased
    assert score(V1.replace("-", ""), V1) == 1.0  # punctuation (the hyphens) removed on both sides
    assert score(f"the {V1[:8]} {V1[9:]}", V1) == 0.0  # a space where a hyphen was: no longer a substring
    assert score(V2, V1) == 0.0 and score("", V1) == 0.0
    samples = [Sample(i, "p", [v], "", 100, "json_kv", 1024) for i, v in enumerate((V1, V2, V3, V1))]
    (row,) = REGISTRY["json_kv"].score([V1, "nothing", "", f"x {V1} y"], samples)
    assert (row.suite, row.metric, row.value, row.n, row.n_null) == ("json_kv", "substring_exact_match", 50.0, 4, 1)


def test_eval_runs_json_kv_through_the_tiny_model(tmp_path):
    res = cli("eval", "--model", "tiny", "--suite", "json_kv", "--lengths", "1024", "--samples", "2",
              "--allow-extrapolation", "--json-kv-shots", "1", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = json.loads((tmp_path / "run" / "results.json").read_text())["scores"]
    assert (row["suite"], row["context_length"], row["n"]) == ("json_kv", 1024, 2)
    saved = json.loads((tmp_path / "run" / "eval_config.json").read_text())
    assert saved["json_kv_shots"] == 1
