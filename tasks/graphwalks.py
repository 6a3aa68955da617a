"""GraphWalks (OpenAI's `openai/graphwalks`, as HELMET's development branch runs it in data_module/graphwalk.py): a
random directed graph written as an edge list fills the context; the model returns the nodes at exactly depth D of a
BFS from a node (`graphwalks_bfs`) or the parents of a node (`graphwalks_parents`).

Reproduced from the definitions in docs/notes/helmet_spec.md, section 3:
- OpenAI's prompt, verbatim (the full prompt of the GW-NeMo example rollouts: the instruction, the four worked
  examples between <begin example> and <end example>, "Here is the graph to operate on:", the edges, two blank lines,
  the operation, the closing instructions), node ids = the first 10 hex characters of md5(str(i)), one
  `src -> dst` line per edge, edges grouped by source in node-index order;
- HELMET-dev's prompt template: the user text + "\\n\\n" + "Final Answer:" (the answer prefix of a base model), its
  generation lengths (BFS: 1000 new tokens at depth 10, 500 at 8, 200 at 5; parents: 100), its parsing (the first
  case-insensitive `final answer: ?[...]` list of the output, else its first `[...]` list; items split on ',',
  stripped, empties dropped) and its F1 over list lengths (an empty gold list scores 1 only for an empty
  prediction), the mean x 100. As HELMET does in base mode, the scorer prepends the answer prefix "Final Answer:" to
  the generated text before parsing, so a base model's " [a, b]" reads as "Final Answer: [a, b]".

Deliberate deviations, documented:
- HELMET's data files (bfs_k{K}.jsonl, parent_k{K}.jsonl) and their generator are not published, nor is OpenAI's
  generator: the graph shape here is our choice. n nodes; node i has an out-degree drawn uniformly from
  1..max_out_degree (default 2) and each edge a target drawn uniformly from all n nodes, with replacement, so
  self-loops and duplicate edges occur as in OpenAI's published example. Why mean out-degree 1.5: a BFS level at
  depth 10 holds ~60 nodes in a 128k-token graph (~8 at depth 5, ~27 at depth 8), answers that fit HELMET's
  generation budgets; a fixed out-degree of 3 (OpenAI's one BFS example) gives levels of hundreds of nodes at
  depth 8 in graphs of that size.
- HELMET fixes K edges per length (250 at 4k ... 8800 at 128k, Llama-3 tokens); here the number of nodes is fitted
  to the evaluated tokenizer (binary search on the exact token count) so that prompt + generation <= the length.
- How OpenAI picks the start node and the depth is unpublished: the depth is an option (default 10, HELMET-dev's
  base `graphwalk_bfs` variant, with its 1000 new tokens; depths HELMET does not list take the budget of the next
  listed depth, and `max_new_tokens` overrides it for both tasks, e.g. for short CPU checks); the start node (the
  parents' node) is drawn uniformly among nodes whose answer is non-empty (the first hit among up to 64 random
  nodes), so no gold list is empty.
- Gold lists hold each node once, in node-index order (the order the edge list groups sources).
- With --chat-template the user text is the user turn and no answer prefix follows (as this project's JSON KV), and
  the output is parsed as generated.
- OpenAI's own grader (the last line only, set sizes) is not the metric: HELMET-dev's is.
The 10-character ids are distinct for the first 300,000 node indices (checked), far beyond 2M-token graphs.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from longrecipe.base.schema import ScoreRow
from longrecipe.tasks import cache, chat
from longrecipe.tasks.base import Sample, TaskBase, option
from longrecipe.tasks.counting import count_tokens
from longrecipe.tasks.views import Column, Plot, Table, View

TASK_VERSION = 1
TASKS = ("graphwalks_bfs", "graphwalks_parents")

# OpenAI's prompt (GW-NeMo data/example_rollouts.jsonl), verbatim, in the pieces that surround the edges and operation
INSTRUCTION = (
    "\nYou will be given a graph as a list of directed edges. All nodes are at least degree 1. You will also get a "
    "description of an operation to perform on the graph.\n"
    "Your job is to execute the operation on the graph and return the set of nodes that the operation results in. "
    "If asked for a breadth-first search (BFS), only return the nodes that are both reachable and exactly at that "
    "depth (not nodes at intermediate depths), and do not return the starting node. If asked for the parents of a "
    "node, only return the nodes that have an edge leading to the given node, do not return the given node itself."
    "\n\n")
EXAMPLES = (
    "Here is an example:\n<begin example>\n\n"
    "The graph has the following edges:\nuvwx -> alke\nabcd -> uvwx\nabcd -> efgh\nefgh -> uvwx\n\n"
    "Example 1:\nOperation:\nPerform a BFS from node abcd and return only the nodes at exactly depth 1 (not nodes at "
    "intermediate depths).\nFinal Answer: [uvwx, efgh]\n\n"
    "Example 2:\nOperation:\nPerform a BFS from node alke and return only the nodes at exactly depth 1 (not nodes at "
    "intermediate depths).\nFinal Answer: []\n\n"
    "Example 3:\nOperation:\nFind the parents of node uvwx.\nFinal Answer: [abcd, efgh]\n\n"
    "Example 4:\nOperation:\nFind the parents of node abcd.\nFinal Answer: []\n\n"
    "<end example>\n")
GRAPH_HEADER = "Here is the graph to operate on:\nThe graph has the following edges:\n"
OPERATION_HEADER = "\n\n\nOperation:\n"
BFS_OPERATION = ("Perform a BFS from node {node} and return only the nodes at exactly depth {depth} "
                 "(not nodes at intermediate depths).")
PARENTS_OPERATION = "Find the parents of node {node}."
CLOSING = (
    "\n\nYou should reason through the operation step by step, and then return the set of nodes that the operation "
    "results in. Return your final answer as a list of nodes in the very last line of your response. For example, "
    "if the operation returns the set of nodes [node1, node2, node3], your response should be:\n"
    "Final Answer: [node1, node2, node3]\n"
    "If the operation returns the empty set, your response should be:\n"
    "Final Answer: []")
# HELMET-dev's prompt_template: user_template + "\n\n" + system_template ("Final Answer:")
SEPARATOR = "\n\n"
ANSWER_PREFIX = "Final Answer:"
BFS_TOKENS = ((5, 200), (8, 500), (10, 1000))  # HELMET-dev's generation lengths by BFS depth
PARENTS_TOKENS = 100
PICK_TRIES = 64  # random candidate nodes tried for a non-empty answer
_FINAL = re.compile(r"final answer: ?\[([^\]]*)\]?", re.IGNORECASE)
_LIST = re.compile(r"\[([^\]]*)\]?")

Graph = list[list[int]]  # graph[i] = the targets of node i's edges, in the order they are listed


def node_id(i: int) -> str:
    """OpenAI's node name: the first 10 hex characters of md5(str(i))."""
    return hashlib.md5(str(i).encode()).hexdigest()[:10]


def draw_pool(rng: random.Random, size: int, max_out_degree: int) -> list[list[float]]:
    """Per node, one uniform draw in [0, 1) per out-edge: the graph of any size n <= `size` reads its targets from
    them, so the token count grows (nearly) steadily with n and n can be fitted by binary search."""
    return [[rng.random() for _ in range(rng.randint(1, max_out_degree))] for _ in range(size)]


def graph_of(pool: list[list[float]], n: int) -> Graph:
    """The graph on the first `n` nodes of the pool: each draw u names node floor(u * n)."""
    return [[int(u * n) for u in pool[i]] for i in range(n)]


def edge_lines(graph: Graph) -> str:
    """The edge list as the prompt writes it: `src -> dst`, one per line, grouped by source in index order."""
    return "\n".join(f"{node_id(s)} -> {node_id(t)}" for s, targets in enumerate(graph) for t in targets)


def bfs_at_depth(graph: Graph, start: int, depth: int) -> list[int]:
    """Nodes whose shortest distance from `start` is exactly `depth` (the start itself is at 0), in index order."""
    seen, frontier = {start}, [start]
    for _ in range(depth):
        nxt = []
        for u in frontier:
            for v in graph[u]:
                if v not in seen:
                    seen.add(v)
                    nxt.append(v)
        frontier = nxt
    return sorted(frontier)


def parents(graph: Graph, node: int) -> list[int]:
    """Sources of an edge into `node`, itself excluded (a self-loop is no parent), each once, in index order."""
    return [s for s, targets in enumerate(graph) if s != node and node in targets]


def operation(task: str, node: int, depth: int) -> str:
    return BFS_OPERATION.format(node=node_id(node), depth=depth) if task == "graphwalks_bfs" else \
        PARENTS_OPERATION.format(node=node_id(node))


def user_text(graph: Graph, op: str) -> str:
    """OpenAI's prompt around the edge list and the operation."""
    return INSTRUCTION + EXAMPLES + GRAPH_HEADER + edge_lines(graph) + OPERATION_HEADER + op + CLOSING


def render(graph: Graph, op: str, wrap: Callable[[str], str] | None = None) -> tuple[str, str]:
    """(input, answer prefix): HELMET-dev's base prompt is user + "\\n\\n" + "Final Answer:"; with `wrap` (a chat
    template) the user text is the user turn and no prefix follows."""
    user = user_text(graph, op)
    return (wrap(user), "") if wrap is not None else (user + SEPARATOR, ANSWER_PREFIX)


def pick(graph: Graph, task: str, depth: int, rng: random.Random) -> tuple[int, list[int]] | None:
    """A node whose answer is non-empty, uniform among such nodes (the first hit in a random order), and its answer;
    None when PICK_TRIES random nodes all have empty answers (a graph too small for the depth)."""
    order = list(range(len(graph)))
    rng.shuffle(order)
    for node in order[:PICK_TRIES]:
        answer = bfs_at_depth(graph, node, depth) if task == "graphwalks_bfs" else parents(graph, node)
        if answer:
            return node, answer
    return None


def bfs_tokens(depth: int) -> int:
    """HELMET-dev's generation length for a BFS depth; other depths take that of the next listed depth (1000 above
    10)."""
    return next((tokens for d, tokens in BFS_TOKENS if depth <= d), BFS_TOKENS[-1][1])


def new_tokens(task: str, depth: int, override: int = 0) -> int:
    return override or (bfs_tokens(depth) if task == "graphwalks_bfs" else PARENTS_TOKENS)


@dataclass(frozen=True)
class Built:
    """One candidate sample: the graph on `nodes` nodes, its prompt, and the question's node and answer (None: no
    node with a non-empty answer was found)."""

    nodes: int
    edges: int
    input: str
    answer_prefix: str
    tokens: int
    question: tuple[int, list[int]] | None


def build(tokenizer: Any, pool: list[list[float]], n: int, task: str, depth: int, seed: int,
          wrap: Callable[[str], str] | None) -> Built:
    """The sample on n nodes; its question node is drawn with a seed of (seed, n), so each n has one fixed prompt."""
    graph = graph_of(pool, n)
    question = pick(graph, task, depth, random.Random(f"{seed}/{n}"))
    text, prefix = render(graph, operation(task, question[0] if question else 0, depth), wrap)
    return Built(n, sum(map(len, graph)), text, prefix, count_tokens(tokenizer, text + prefix), question)


def fit(tokenizer: Any, pool: list[list[float]], budget: int, task: str, depth: int, seed: int,
        wrap: Callable[[str], str] | None = None) -> Built | None:
    """The largest graph whose prompt fits `budget` tokens (binary search on the node count; the count grows with
    the nodes up to a few tokens of noise, and only a probed size that fits is kept), stepping down a few sizes when
    that graph has no node with a non-empty answer. None when nothing fits."""
    lo, hi = 1, len(pool)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if build(tokenizer, pool, mid, task, depth, seed, wrap).tokens <= budget:
            lo = mid
        else:
            hi = mid - 1
    for n in range(lo, max(lo - 16, 0), -1):
        made = build(tokenizer, pool, n, task, depth, seed, wrap)
        if made.tokens <= budget and made.question is not None:
            return made
    return None


def generate(tokenizer: Any, length: int, num_samples: int, task: str, seed: int = 0, depth: int = 10,
             max_out_degree: int = 2, max_new_tokens: int = 0, chat_template: bool = False) -> list[Sample]:
    """Samples of `task` whose prompt plus its generation length fits `length` tokens of `tokenizer`; sample i's
    graph is drawn from a generator seeded by (task, seed, length, i)."""
    tokens = new_tokens(task, depth, max_new_tokens)
    budget = length - tokens
    wrap = chat.wrapper(tokenizer) if chat_template else None
    per_edge = max(1, count_tokens(tokenizer, f"{node_id(0)} -> {node_id(1)}\n{node_id(2)}") - 1)
    out = []
    for i in range(num_samples):
        rng = random.Random(f"graphwalks/{task}/{seed}/{length}/{i}")
        pool = draw_pool(rng, 2 * max(budget, 0) // per_edge + 2, max_out_degree)  # ample: each node has an edge
        made = fit(tokenizer, pool, budget, task, depth, rng.getrandbits(32), wrap)
        if made is None:
            what = f"a node at depth {depth}" if task == "graphwalks_bfs" else "a node with parents"
            raise ValueError(f"{task}: length {length} cannot hold a graph with {what} (with this tokenizer, "
                             f"{tokens} of its tokens for the answer)")
        node, answer = made.question
        out.append(Sample(i, made.input, [node_id(a) for a in answer], made.answer_prefix, tokens, task, length,
                          made.tokens + tokens, extra={"nodes": made.nodes, "edges": made.edges,
                                                       "question_node": node_id(node)}))
    return out


def parse_answer(text: str) -> list[str]:
    """HELMET-dev's parse: the first `final answer: [..]` list (any case), else the first `[..]` list; items split
    on ',' and stripped, empty ones dropped; [] when there is no list."""
    found = _FINAL.search(text) or _LIST.search(text)
    return [] if found is None else [item.strip() for item in found.group(1).split(",") if item.strip()]


def f1(prediction: list[str], gold: list[str]) -> float:
    """HELMET-dev's F1 (0-1): overlap of the sets over the *list* lengths; an empty gold list scores 1 only for an
    empty prediction."""
    if not gold:
        return float(not prediction)
    overlap = len(set(prediction) & set(gold))
    recall, precision = overlap / len(gold), overlap / len(prediction) if prediction else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@dataclass(frozen=True)
class GraphWalksOptions:
    depth: int = option(10, "BFS depth asked (HELMET-dev's variants: 10, 8, 5)", ge=1)
    max_out_degree: int = option(2, "each node's out-degree is uniform in 1..this (our choice: unpublished)", ge=1)
    max_new_tokens: int = option(0, "new tokens per answer (0: HELMET-dev's: BFS 1000/500/200 at depth 10/8/5, "
                                    "parents 100)", ge=0)
    chat_template: bool = option(False, key="chat_template")


class GraphWalks(TaskBase):
    """GraphWalks BFS and parents at each length: one F1 row per task per length."""

    name, version, Options = "graphwalks", TASK_VERSION, GraphWalksOptions
    view = View(columns=tuple(Column(t, tasks=(t,)) for t in TASKS),
                tables=tuple(Table(f"{t}_by_length", f"GraphWalks {t.split('_')[1]} (F1) by context length",
                                   tasks=(t,)) for t in TASKS),
                plots=tuple(Plot(f"{t}_vs_length", f"GraphWalks {t.split('_')[1]} F1", tasks=(t,)) for t in TASKS))

    def samples(self, tokenizer: Any, length: int, n: int, seed: int, options: GraphWalksOptions,
                log: Callable[[str], None] = print) -> list[Sample]:
        where = cache.path(self.name, self.version, tokenizer, length, n, seed, options)
        return cache.samples(where, lambda: [s for task in TASKS for s in generate(
            tokenizer, length, n, task, seed, options.depth, options.max_out_degree, options.max_new_tokens,
            options.chat_template)])

    def score(self, predictions: list[str], samples: list[Sample]) -> list[ScoreRow]:
        """The answer prefix goes back in front of each generation before parsing, as HELMET does in base mode."""
        values = [100 * f1(parse_answer(s.answer_prefix + p), s.references) for p, s in zip(predictions, samples)]
        nulls = sum(not p.strip() for p in predictions)
        return [ScoreRow("graphwalks", samples[0].task, "f1", sum(values) / len(values), self.version,
                         samples[0].context_length, None, len(values), nulls)]


TASK = GraphWalks()
