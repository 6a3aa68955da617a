"""HELMET's Recall category (tasks/helmet.py) against its definition (docs/notes/helmet_spec.md, section 2): the
four tasks, HELMET's prompts for RULER's needle tasks (a newline before the prefix, singular for MK, plural for MV),
its generation lengths, ruler_recall by hand and the category as the unweighted mean of the four."""

from __future__ import annotations

import json

import pytest
from helpers import cli

from longrecipe.base.schema import ScoreRow
from longrecipe.tasks import helmet
from longrecipe.tasks.base import Sample
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.suites import REGISTRY

TASK = REGISTRY["helmet_recall"]


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    return load_tokenizer(tiny_dir)


def test_recall_is_helmets_four_tasks():
    assert helmet.TASKS == ("json_kv", "ruler_niah_mk_2", "ruler_niah_mk_3", "ruler_niah_mv")
    assert {k: v[1] for k, v in helmet.NEEDLES.items()} == {"ruler_niah_mk_2": 50, "ruler_niah_mk_3": 100,
                                                             "ruler_niah_mv": 50}


@pytest.mark.parametrize(("name", "kind", "verb", "question"), [
    ("ruler_niah_mk_2", "number", "is", "What is the special magic number for"),
    ("ruler_niah_mk_3", "uuid", "is", "What is the special magic uuid for"),
    ("ruler_niah_mv", "numbers", "are", "What are all the special magic numbers for"),
])
def test_needle_prompts_are_helmets(tok, name, kind, verb, question):
    (s,) = helmet.needle_samples(name, tok, 1024, 1, 3, None, False)
    opening = "A special magic {k} is hidden" if verb == "is" else "Some special magic {k} are hidden"
    assert s.input.startswith(opening.format(k=kind) + " within the following text. Make sure to memorize it. I will "
                              f"quiz you about the {kind} afterwards.\n")
    query = s.input.rsplit(question + " ", 1)[1].split(" mentioned in the provided text?")[0]
    assert s.input.endswith(f"\n{question} {query} mentioned in the provided text?")
    assert s.answer_prefix == f"\nThe special magic {kind} for {query} mentioned in the provided text {verb}"
    assert s.max_new_tokens == helmet.NEEDLES[name][1]
    assert len(s.references) == (4 if name == "ruler_niah_mv" else 1)
    assert all(r in s.input for r in s.references)
    assert count_tokens(tok, s.prompt) + s.max_new_tokens <= 1024


def test_ruler_recall_by_hand():
    prefix = "\nThe special magic numbers for x mentioned in the provided text are"
    golds = ["1234567", "7654321", "1111111", "2222222"]
    assert helmet.ruler_recall(" 1234567, 7654321 and 1111111", prefix, golds) == 0.75
    assert helmet.ruler_recall("none", prefix, golds) == 0.0
    assert helmet.ruler_recall("ABC-def", "", ["abc-DEF"]) == 1.0  # case-insensitive, nothing else normalised
    samples = [Sample(i, "p", golds, prefix, 50, "ruler_niah_mv", 2048) for i in range(2)]
    (row,) = TASK.score([" 1234567 2222222", ""], samples)
    assert (row.task, row.metric, row.value, row.n, row.n_null) == ("ruler_niah_mv", "ruler_recall", 25.0, 2, 1)


def test_the_category_is_the_unweighted_mean_of_all_four():
    values = {"json_kv": 40.0, "ruler_niah_mk_2": 100.0, "ruler_niah_mk_3": 80.0, "ruler_niah_mv": 60.0}
    rows = [ScoreRow("helmet_recall", t, "m", v, 1, 4096, None, 10) for t, v in values.items()]
    (recall,) = TASK.summarize(rows + [ScoreRow("helmet_recall", "json_kv", "m", 0.0, 1, 8192, None, 10)])
    assert (recall.task, recall.value, recall.context_length, recall.n) == ("recall", 70.0, 4096, 40)
    assert TASK.derived(recall)  # 8192 holds one task of four: no category score there


def test_eval_runs_helmet_recall_through_the_tiny_model(tmp_path):
    res = cli("eval", "--model", "tiny", "--suite", "helmet_recall", "--lengths", "1024", "--samples", "1",
              "--allow-extrapolation", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["scores"]
    assert sorted(r["task"] for r in rows) == sorted([*helmet.TASKS, "recall"])
    (recall,) = [r for r in rows if r["task"] == "recall"]
    assert recall["value"] == pytest.approx(sum(r["value"] for r in rows if r["task"] != "recall") / 4)
