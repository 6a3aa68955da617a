"""GraphWalks (tasks/graphwalks.py) against its definition (docs/notes/helmet_spec.md, section 3): OpenAI's node ids
and prompt, BFS-at-exactly-depth and parents on a hand-made graph, HELMET-dev's parsing and list-length F1 by hand,
prompts that fill the length, and gold answers recomputed from the prompt text by an independent BFS."""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path

import pytest
from helpers import cli

from longrecipe.tasks import graphwalks as gw
from longrecipe.tasks.base import Sample
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.suites import REGISTRY

SPEC = Path(__file__).resolve().parents[2] / "docs" / "notes" / "helmet_spec.md"
SMOLLM = Path.home() / ".cache" / "longrecipe" / "models" / "smollm2-135m"
# 0 -> 1, 2; 1 -> 3; 2 -> 3, 0 (back to 0); 3 -> 4, 3 (a self-loop); 4 -> 5, 5 (a duplicate edge); 5 -> 1
GRAPH = [[1, 2], [3], [3, 0], [4, 3], [5, 5], [1]]


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    return load_tokenizer(tiny_dir)


def test_node_ids_are_the_first_ten_hex_characters_of_md5():
    # md5("0") = cfcd2084 95d5..., md5("1") = c4ca4238 a0b9..., md5("2") = c81e728d 9d4c...
    assert [gw.node_id(i) for i in (0, 1, 2, 6, 8, 10)] == [
        "cfcd208495", "c4ca4238a0", "c81e728d9d", "1679091c5a", "c9f0f895fb", "d3d9446802"]


def test_bfs_returns_the_nodes_at_exactly_the_depth_without_the_start():
    # shortest distances from 0: 1 and 2 at 1, 3 at 2, 4 at 3, 5 at 4 (5 -> 1 finds nothing new)
    assert [gw.bfs_at_depth(GRAPH, 0, d) for d in (1, 2, 3, 4, 5)] == [[1, 2], [3], [4], [5], []]
    # from 2: 3 and 0 at 1; 4 (via 3) and 1 (via 0) at 2, not 2 itself (2 -> 0 -> 2 returns to the start)
    assert gw.bfs_at_depth(GRAPH, 2, 2) == [1, 4]
    # from 3: the self-loop is no step; 4 at 1, 5 at 2, 1 at 3, nothing at 4 (1 -> 3 is the start)
    assert [gw.bfs_at_depth(GRAPH, 3, d) for d in (1, 2, 3, 4)] == [[4], [5], [1], []]


def test_parents_are_the_sources_of_edges_into_the_node_once_and_never_itself():
    assert gw.parents(GRAPH, 3) == [1, 2]  # 3 -> 3 is a self-loop: not a parent
    assert gw.parents(GRAPH, 5) == [4]  # two edges 4 -> 5, one parent
    assert gw.parents(GRAPH, 1) == [0, 5] and gw.parents(GRAPH, 0) == [2] and gw.parents(GRAPH, 4) == [3]


def test_edges_are_listed_by_source_in_index_order():
    assert gw.edge_lines([[1, 1], [0]]) == (
        "cfcd208495 -> c4ca4238a0\ncfcd208495 -> c4ca4238a0\nc4ca4238a0 -> cfcd208495")


def _spec_prompt(edges: str, op: str) -> str:
    """OpenAI's full prompt as the spec quotes it, with its placeholder edge lines and operation filled in."""
    text = SPEC.read_text()
    block = text.split("**[V] A real full prompt**", 1)[1].split("```\n", 1)[1].split("\n```", 1)[0]
    assert block.startswith("\\nYou will be given a graph")  # the spec writes the leading newline as `\n`
    block = "\n" + block[2:]
    placeholder_edges = "<src> -> <dst>\n..."
    placeholder_op = ("<Perform a BFS from node X and return only the nodes at exactly depth D (not nodes at "
                      "intermediate depths).  |  Find the parents of node X.>")
    assert block.count(placeholder_edges) == 1 and block.count(placeholder_op) == 1
    return block.replace(placeholder_edges, edges).replace(placeholder_op, op)


def test_the_prompt_is_openais_text_joined_by_helmets_template():
    edges = "cfcd208495 -> c4ca4238a0\nc4ca4238a0 -> cfcd208495"
    bfs = ("Perform a BFS from node c4ca4238a0 and return only the nodes at exactly depth 7 "
           "(not nodes at intermediate depths).")
    text, prefix = gw.render([[1], [0]], gw.operation("graphwalks_bfs", 1, 7))
    assert (text, prefix) == (_spec_prompt(edges, bfs) + "\n\n", "Final Answer:")  # user + "\n\n" + system
    text, prefix = gw.render([[1], [0]], gw.operation("graphwalks_parents", 0, 7))
    assert text == _spec_prompt(edges, "Find the parents of node cfcd208495.") + "\n\n"
    assert "depth 1 (not nodes at intermediate depths).\nFinal Answer: [uvwx, efgh]\n\nExample 2:" in text
    assert "c4ca4238a0 -> cfcd208495\n\n\nOperation:\nFind the parents" in text  # two blank lines before Operation
    wrapped, prefix = gw.render([[1], [0]], "op", wrap=lambda u: f"<user>{u}</user>")
    assert wrapped == f"<user>{gw.user_text([[1], [0]], 'op')}</user>" and prefix == ""


def test_parsing_takes_helmets_first_final_answer_list():
    parse = gw.parse_answer
    assert parse("[a, b]") == ["a", "b"]
    assert parse("FINAL ANSWER: [x]") == ["x"]  # any case
    assert parse("final answer:[x, y]") == ["x", "y"]  # the space is optional
    assert parse("[z]\nFinal Answer: [a]\nFinal Answer: [b]") == ["a"]  # the first final-answer list wins
    assert parse("nodes z, then [q] and [r]") == ["q"]  # no final answer: the first list
    assert parse("Final Answer: [a, b") == ["a", "b"]  # the closing bracket is optional
    assert parse("[ a , , b ,]") == ["a", "b"] and parse("Final Answer: []") == []
    assert parse("no brackets here") == [] and parse("") == []


def test_f1_uses_list_lengths_and_the_empty_gold_rule():
    assert gw.f1(["a", "b"], ["a", "c"]) == 0.5  # P = 1/2, R = 1/2
    assert gw.f1([], []) == 1.0 and gw.f1(["x"], []) == 0.0 and gw.f1([], ["a"]) == 0.0
    assert gw.f1(["a", "a"], ["a"]) == pytest.approx(2 / 3)  # P = 1/2 (two items), R = 1
    assert gw.f1(["b", "a"], ["a", "b"]) == 1.0 and gw.f1(["q"], ["a"]) == 0.0


def test_the_score_puts_the_answer_prefix_back_before_parsing():
    task = REGISTRY["graphwalks"]
    golds = [["a", "c"], ["a"], ["a"], ["b"]]
    samples = [Sample(i, "p\n\n", g, "Final Answer:", 100, "graphwalks_parents", 2048) for i, g in enumerate(golds)]
    # 50 (P = R = 1/2), 100, 0 (empty), 100: the prefix makes " [b]" the first final-answer list, not the later [a]
    (row,) = task.score([" [a, b]", " [a]\nmore", "", " [b]\nFinal Answer: [a]"], samples)
    assert (row.suite, row.task, row.metric, row.value, row.n, row.n_null, row.context_length) == (
        "graphwalks", "graphwalks_parents", "f1", 62.5, 4, 1, 2048)


def _independent_answer(prompt: str) -> tuple[list[str], set[str], int]:
    """(sources in listing order, the answer, max out-degree) read back from the prompt text alone."""
    edges_text = prompt.split("Here is the graph to operate on:\nThe graph has the following edges:\n", 1)[1]
    edges_text, rest = edges_text.split("\n\n\nOperation:\n", 1)
    pairs = [tuple(line.split(" -> ")) for line in edges_text.split("\n")]
    adj: dict[str, list[str]] = {}
    for s, t in pairs:
        adj.setdefault(s, []).append(t)
    sources = list(dict.fromkeys(s for s, _ in pairs))
    bfs = re.match(r"Perform a BFS from node (\w+) and return only the nodes at exactly depth (\d+) ", rest)
    if bfs:
        start, depth = bfs.group(1), int(bfs.group(2))
        dist, todo = {start: 0}, deque([start])
        while todo:
            u = todo.popleft()
            for v in adj.get(u, []):
                if v not in dist:
                    dist[v] = dist[u] + 1
                    todo.append(v)
        answer = {v for v, d in dist.items() if d == depth}
    else:
        node = re.match(r"Find the parents of node (\w+)\.", rest).group(1)
        answer = {s for s, t in pairs if t == node and s != node}
    return sources, answer, max(map(len, adj.values()))


def _check_samples(tokenizer, samples: list[Sample], length: int) -> None:
    line = count_tokens(tokenizer, f"{gw.node_id(0)} -> {gw.node_id(1)}\n")
    for s in samples:
        used = count_tokens(tokenizer, s.prompt)
        assert used + s.max_new_tokens == s.length <= length  # the answer's tokens fit too
        assert length - s.length < 4 * line  # no room left for another node's one or two edges
        sources, answer, degree = _independent_answer(s.prompt)
        assert sources == [gw.node_id(i) for i in range(len(sources))] and degree <= 2  # grouped, in index order
        assert answer and set(s.references) == answer and len(s.references) == len(answer)


def test_tiny_samples_fill_the_length_and_their_answers_follow_from_the_prompt(tok):
    for length, depth, budget in ((1024, 2, 32), (2048, 3, 0)):
        for task in gw.TASKS:
            samples = gw.generate(tok, length, 3, task, seed=5, depth=depth, max_new_tokens=budget)
            assert [s.max_new_tokens for s in samples] == [budget or (200 if task == "graphwalks_bfs" else 100)] * 3
            _check_samples(tok, samples, length)
    again = gw.generate(tok, 2048, 2, "graphwalks_bfs", seed=5, depth=3)
    assert [s.prompt for s in again] == [s.prompt for s in gw.generate(tok, 2048, 2, "graphwalks_bfs", seed=5, depth=3)]
    assert again[0].prompt != again[1].prompt  # each index its own graph


@pytest.mark.skipif(not SMOLLM.exists(), reason=f"the SmolLM2 tokenizer is not at {SMOLLM}")
def test_smollm2_samples_at_helmets_default_depth():
    from longrecipe.base.tokenization import load_tokenizer

    tokenizer = load_tokenizer(SMOLLM)
    samples = REGISTRY["graphwalks"].samples(tokenizer, 4096, 2, 0, gw.GraphWalksOptions())
    assert [(s.task, s.max_new_tokens) for s in samples] == [("graphwalks_bfs", 1000)] * 2 + [
        ("graphwalks_parents", 100)] * 2
    assert "exactly depth 10 (not" in samples[0].prompt
    _check_samples(tokenizer, samples, 4096)
    (chat,) = gw.generate(tokenizer, 4096, 1, "graphwalks_parents", chat_template=True)
    assert chat.answer_prefix == "" and chat.input.endswith(tokenizer.apply_chat_template(
        [{"role": "user", "content": "QQQ"}], tokenize=False, add_generation_prompt=True).split("QQQ")[-1])
    _check_samples(tokenizer, [chat], 4096)


def test_a_length_too_short_for_the_prompt_is_one_clear_error(tok):
    with pytest.raises(ValueError, match="graphwalks_bfs: length 700 cannot hold a graph with a node at depth 10"):
        gw.generate(tok, 700, 1, "graphwalks_bfs", max_new_tokens=16)


def test_eval_runs_graphwalks_through_the_tiny_model(tmp_path):
    res = cli("eval", "--model", "tiny", "--suite", "graphwalks", "--lengths", "1024", "--samples", "2",
              "--allow-extrapolation", "--graphwalks-depth", "2", "--graphwalks-max-new-tokens", "8",
              "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["scores"]
    assert [(r["suite"], r["task"], r["metric"], r["context_length"], r["n"]) for r in rows] == [
        ("graphwalks", t, "f1", 1024, 2) for t in gw.TASKS]
    assert all(0 <= r["value"] <= 100 for r in rows)
    saved = json.loads((tmp_path / "run" / "eval_config.json").read_text())
    assert (saved["graphwalks_depth"], saved["graphwalks_max_new_tokens"]) == (2, 8)
