"""BABILong qa1-qa5 (tasks/babilong.py) against its definition (docs/notes/babilong_spec.md): the rendered prompt of
the reference's notebook, the metric's hand-checked cases, generated stories with the released files' shape
(templates, answer vocabulary, fact counts) whose answers an independent solver in this file agrees with, facts
hidden in order in a haystack that fills the length, and the published layout read and scored by the same code."""

from __future__ import annotations

import json
import random
import re
import statistics

import pytest
from helpers import cli

from longrecipe.tasks import babilong
from longrecipe.tasks.base import Sample
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.suites import REGISTRY

TASK = REGISTRY["babilong"]
# the spec's section 1.3: qa1 with the 0k sample of the reference's evaluation notebook, character for character
NOTEBOOK_PROMPT = (
    "I will give you context with the facts about positions of different persons hidden in some random text and a "
    "question. You need to answer the question based only on the information from the facts. If a person was in "
    "different locations, use the latest location to answer the question.\n\n<example>\nCharlie went to the "
    "hallway. Judith come back to the kitchen. Charlie travelled to balcony. Where is Charlie?\nAnswer: The most "
    "recent location of Charlie is balcony.\n</example>\n\n<example>\nAlan moved to the garage. Charlie went to the "
    "beach. Alan went to the shop. Rouse travelled to balcony. Where is Alan?\nAnswer: The most recent location of "
    "Alan is shop.\n</example>\n\nAlways return your answer in the following format: The most recent location of "
    "\u2019person\u2019 is \u2019location\u2019. Do not write anything else after that.\n\n<context>\nJohn travelled "
    "to the hallway. Mary journeyed to the bathroom. Daniel went back to the bathroom. John moved to the bedroom.\n"
    "</context>\n\nQuestion: Where is Mary?")
NOTEBOOK_ROW = {"input": "John travelled to the hallway. Mary journeyed to the bathroom. Daniel went back to the "
                         "bathroom. John moved to the bedroom.", "question": "Where is Mary? ", "target": "bathroom"}

# ----------------------------------------------------------- an independent reading of the facts (the bAbI rules)
P = r"(?P<p>[A-Z][a-z]+)"
L = r"(?P<l>bathroom|bedroom|garden|hallway|kitchen|office)"
OBJ = r"(?P<o>apple|football|milk)"
MOVE = re.compile(rf"{P} (?:moved to|went to|went back to|journeyed to|travelled to) the {L}\.")
TAKE = re.compile(rf"{P} (?:got|grabbed|picked up|took) the {OBJ}(?P<there> there)?\.")
DROP = re.compile(rf"{P} (?:dropped|discarded|put down|left) the {OBJ}(?: there)?\.")
GIVE = re.compile(rf"{P} (?:gave|handed|passed) the {OBJ} to (?P<q>[A-Z][a-z]+)\.")
REL = re.compile(r"The (?P<a>\w+) is (?P<d>north|south|east|west) of the (?P<b>\w+)\.")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


def solve(task: str, facts: list[str], question: str) -> str:
    """The answer by reading the facts in order, as the bAbI task definitions say (spec section 4)."""
    if task == "qa4":
        rel = {}
        for f in facts:
            a, d, b = REL.fullmatch(f).group("a", "d", "b")
            rel[(d, b)] = a  # a is d of b
            rel[(OPPOSITE[d], a)] = b
        if m := re.fullmatch(r"What is (\w+) of the (\w+)\?", question):
            return rel[(m[1], m[2])]
        m = re.fullmatch(r"What is the (\w+) (\w+) of\?", question)
        return rel[(OPPOSITE[m[2]], m[1])]
    where, holder, lies, trail, gives = {}, {}, {}, {}, []
    for f in facts:
        if m := MOVE.fullmatch(f):
            where[m["p"]] = m["l"]
            for o, h in holder.items():
                if h == m["p"] and o in trail and trail[o][-1] != m["l"]:
                    trail[o].append(m["l"])
        elif m := TAKE.fullmatch(f):
            holder[m["o"]] = m["p"]
            here = where.get(m["p"])
            if here and (not trail.get(m["o"]) or trail[m["o"]][-1] != here):
                trail.setdefault(m["o"], []).append(here)
        elif m := DROP.fullmatch(f):
            lies[m["o"]] = where.get(holder.pop(m["o"]))
        elif m := GIVE.fullmatch(f):
            holder[m["o"]] = m["q"]
            gives.append((m["p"], m["o"], m["q"]))
        else:
            raise AssertionError(f"not a bAbI {task} sentence: {f!r}")
    q = question.strip()
    if m := re.fullmatch(r"Where is (\w+)\?", q):
        return where[m[1]]
    if m := re.fullmatch(r"Where is the (\w+)\?", q):
        return where[holder[m[1]]] if m[1] in holder else lies[m[1]]
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", q):
        assert trail[m[1]][-1] == m[2]
        return trail[m[1]][-2]
    p, o, r = gives[-1]
    answers = {rf"What did {p} give to {r}\?": o, rf"Who gave the {o}\?": p, rf"Who gave the {o} to {r}\?": p,
               rf"Who did {p} give the {o} to\?": r, rf"Who received the {o}\?": r}
    (answer,) = [a for pattern, a in answers.items() if re.fullmatch(pattern, q)]
    return answer


def test_the_prompt_is_babilongs_template_with_qa1s_parts():
    assert babilong.render("qa1", NOTEBOOK_ROW["input"] + "\n", NOTEBOOK_ROW["question"]) == NOTEBOOK_PROMPT
    qa2 = babilong.render("qa2", "x", "Where is the milk? ")
    assert "question.You need" in qa2 and "facts.\nIf a person got" in qa2  # the reference's spacing, kept
    assert babilong.render("qa3", "x", "q").count("question. You need") == 1
    assert babilong.PROMPTS["qa5"]["examples"].count("<example>") == 3
    assert qa2.endswith("</context>\n\nQuestion: Where is the milk?")  # stripped: no trailing space


@pytest.mark.parametrize(("target", "output", "question", "task", "right"), [
    ("bathroom", "The most recent location of Mary is bathroom.", "Where is Mary? ", "qa1", True),
    ("bathroom", "Mary is in the bathroom. Before that she was in the kitchen.", "Where is Mary? ", "qa1", True),
    ("bathroom", "bathroom or kitchen", "Where is Mary? ", "qa1", False),
    ("bathroom", "Before the kitchen the apple was in the bathroom.", "Where was the apple before the kitchen? ",
     "qa3", True),
    ("Fred", "Mr. Fred", "Who did Mary give the apple to? ", "qa5", False),
    ("bedroom", "<example> bedroom", "Where is John? ", "qa1", False),
    ("kitchen", "Question: kitchen", "Where is John? ", "qa1", True),
    ("apple", "The apple.", "What did Fred give to Bill? ", "qa5", True),
    ("Fred", "fred gave it", "Who gave the apple? ", "qa5", True),
    ("Fred", "Fred gave the apple", "Who gave the milk? ", "qa5", False),  # two labels once 'milk' is not asked
])
def test_the_metric_by_hand(target, output, question, task, right):
    assert babilong.compare_answers(target, output, question, babilong.TASK_LABELS[task]) is right


@pytest.mark.parametrize("task", babilong.TASKS)
def test_generated_stories_have_the_released_shape_and_answers_that_follow_from_the_facts(task):
    stories = [babilong.story(task, random.Random(f"shape/{task}/{i}")) for i in range(300)]
    low, high, mean = babilong.FACT_COUNTS[task]
    counts = [len(s.facts) for s in stories]
    assert min(counts) >= low and max(counts) <= high
    assert abs(statistics.mean(counts) - mean) <= 0.25 * mean + 0.5, statistics.mean(counts)
    labels = set(babilong.TASK_LABELS[task])
    for s in stories:
        assert s.answer in labels
        assert solve(task, s.facts, s.question) == s.answer
        assert babilong.compare_answers(s.answer, s.answer, s.question, tuple(labels))  # the oracle scores 100
    people = {m["p"] for s in stories for f in s.facts if (m := re.match(P, f))} - {"The"}
    assert people <= set(babilong.PEOPLE_QA5 if task == "qa5" else babilong.PEOPLE)
    assert len({s.question for s in stories}) >= 3  # every person (qa1), object (qa2) or relation is asked about


def test_facts_are_hidden_in_order_in_a_haystack_that_fills_the_length(tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    rows = babilong.generate("qa2", tok, 1024, 2, seed=5)
    for i, row in enumerate(rows):
        tale = babilong.story("qa2", random.Random(f"babilong/qa2/5/1024/{i}"))
        assert row["outputs"] == [tale.answer] and row["question"] == tale.question
        context = row["input"].split("<context>\n")[1].split("\n</context>")[0]
        at = -1
        for f in tale.facts:  # each fact whole, in the story's order
            at = context.index(f, at + 1)
        assert row["sentences"] > 0
        assert count_tokens(tok, row["input"]) == row["length"] <= 1024 - babilong.MAX_NEW_TOKENS
    assert rows == babilong.generate("qa2", tok, 1024, 2, seed=5)  # reproducible
    with pytest.raises(ValueError, match="babilong qa3: length 300 cannot hold the prompt"):
        babilong.generate("qa3", tok, 300, 1)


def test_hide_puts_facts_in_the_drawn_gaps():
    assert babilong.hide(["F1.", "F2."], ["S1.", "S2."], [0.0, 0.99]) == "F1. S1. S2. F2."
    assert babilong.hide(["F1.", "F2."], ["S1.", "S2."], [0.5, 0.4]) == "S1. F1. F2. S2."
    assert babilong.hide(["F1."], [], [0.7]) == "F1."


def test_the_published_layout_is_read_and_scored_by_the_same_code(tmp_path, tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    assert [babilong.split_name(n) for n in (1, 999, 1000, 4096, 8192, 131072, 1_048_576)] == \
        ["0k", "0k", "1k", "4k", "8k", "128k", "1M"]
    (tmp_path / "data" / "qa1").mkdir(parents=True)
    rows = [NOTEBOOK_ROW, {**NOTEBOOK_ROW, "question": "Where is John? ", "target": "bedroom"}]
    (tmp_path / "data" / "qa1" / "0k.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = TASK.Options(tasks=("qa1",), dir=str(tmp_path))
    samples = TASK.samples(load_tokenizer(tiny_dir), 512, 5, 0, opts)
    assert [s.input for s in samples][0] == NOTEBOOK_PROMPT and len(samples) == 2
    (row,) = TASK.score(["The most recent location of Mary is bathroom.", "kitchen"], samples)
    assert (row.task, row.metric, row.value, row.n) == ("qa1", "acc", 50.0, 2)
    (tmp_path / "data" / "qa1" / "1k.json").write_text(json.dumps([{"input": "x"}]))
    with pytest.raises(ValueError, match="row 0 lacks one of input, question, target"):
        babilong.read_rows(tmp_path, "qa1", 1024)
    with pytest.raises(FileNotFoundError, match="no BABILong file .*qa2/0k.json"):
        babilong.read_rows(tmp_path, "qa2", 512)


def test_the_average_is_the_mean_over_the_tasks_at_each_length():
    samples = {t: [Sample(0, "p", [a], "", 20, t, 2048, extra={"question": q})]
               for t, a, q in (("qa1", "office", "Where is Mary? "), ("qa4", "garden", "What is west of the hall?"))}
    rows = TASK.score(["office"], samples["qa1"]) + TASK.score(["kitchen"], samples["qa4"])
    (avg,) = TASK.summarize(rows)
    assert (avg.task, avg.value, avg.context_length, avg.n) == ("average", 50.0, 2048, 2) and TASK.derived(avg)


def test_eval_runs_babilong_through_the_tiny_model(tmp_path):
    res = cli("eval", "--model", "tiny", "--suite", "babilong", "--lengths", "1024", "--samples", "1",
              "--babilong-tasks", "qa1,qa4", "--allow-extrapolation", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["scores"]
    assert sorted((r["task"], r["context_length"], r["n"]) for r in rows) == \
        [("average", 1024, 2), ("qa1", 1024, 1), ("qa4", 1024, 1)]
    bad = cli("eval", "--model", "tiny", "--suite", "babilong", "--babilong-tasks", "qa9", "--out",
              str(tmp_path / "bad"))
    assert bad.returncode == 2 and "unknown BABILong task 'qa9'" in bad.stderr and not (tmp_path / "bad").exists()
