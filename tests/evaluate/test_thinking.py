"""`--think` (evaluate/thinking.py): a reasoning model's thought and its answer in two passes with their own budgets,
the answer prefix after the thought; a scripted fake reasoning output goes through every generation suite's scorer;
tiny runs check the two passes against a direct generation, the prediction rows, the manifest and the identity."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import cli, lines, one_line_exit_2

from longrecipe.base.config import ConfigError
from longrecipe.evaluate import thinking
from longrecipe.evaluate.thinking import DEFAULT_PAIR, Split, Thinking, split
from longrecipe.tasks.base import Sample
from longrecipe.tasks.suites import REGISTRY

THINK = Thinking(*DEFAULT_PAIR, 64)


# ---- the strip function ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, opened, answer, closed", [
    ("<think>maybe 123</think> 456", False, "456", True),  # one closed span
    ("<think>a 1</think>draft 2<think>b 3</think>\n 42 \n", False, "42", True),  # several: after the LAST end
    ("<think>still thinking 123", False, "", False),  # the budget ran out mid-thought
    ("<think>a</think>draft<think>more 7", False, "", False),  # reopened after the last end, never closed
    ("just 42", False, "just 42", True),  # no span: the model did not think
    ("just 42", True, "", False),  # the prompt opened the thought (a chat template's <think>), never closed
    ("thinking 1</think>\n\n42", True, "42", True),  # opened by the prompt: only the end marker is generated
    ("  \n<think>\n</think>\n\n  answer  \n", False, "answer", True),  # whitespace around an empty thought
])
def test_split_scores_what_follows_the_last_end_marker(text, opened, answer, closed):
    found = split(text, *DEFAULT_PAIR, opened=opened)
    assert (found.answer, found.closed) == (answer, closed)
    assert found.thought + text[len(found.thought):] == text  # the thought is the text before the answer


def test_a_configured_pair_and_the_values_of_think():
    assert split("[[r]]it is 1[[/r]] it is 2", "[[r]]", "[[/r]]") == Split("it is 2", "[[r]]it is 1[[/r]]", True)
    assert split("<think>x</think>y", "[[r]]", "[[/r]]").answer == "<think>x</think>y"  # other markers stay text
    assert thinking.parse(None) is None and thinking.parse("on") == thinking.parse("ON") == DEFAULT_PAIR
    assert thinking.parse(" <r> , </r> ") == ("<r>", "</r>")
    for bad in ("<think>", ",</think>", "<think>,", " , ", "a,a", "a,b,c", ""):
        with pytest.raises(ConfigError, match="think: expected"):
            thinking.parse(bad)


def test_the_prefix_is_not_sent_and_a_restated_one_is_not_scored():
    """RULER's pitfall (NVIDIA/RULER#108, lm-eval#3403): the answer prefix opens the assistant's turn, where the
    thought must begin. With --think it is not sent, and an answer that restates it is scored as the continuation
    the scorers read without thinking."""
    from longrecipe.evaluate.runner import request

    s = Sample(0, "Q?", ["x"], " The answer is", 32)
    assert request(s) == request(s, None) and (request(s).prompt, request(s).max_new_tokens) == ("Q? The answer is", 32)
    asked = request(s, THINK)  # the answer's own budget; the prefix waits for the answer pass
    assert (asked.prompt, asked.max_new_tokens, asked.answer_prefix) == ("Q?", 32, " The answer is")
    found = thinking.scored(THINK, "<think>maybe y</think>\nThe answer is x.", "Q?", s.answer_prefix)
    assert found == Split("x.", "<think>maybe y</think>", True)
    assert thinking.scored(THINK, "x.", "Q?<think>\n", "").closed is False  # the prompt opened the thought


def test_a_marker_the_engines_would_drop_is_refused(tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    thinking.check_tokenizer(THINK, tok)
    with pytest.raises(ConfigError, match="special token"):
        thinking.check_tokenizer(Thinking("<think>", tok.eos_token, 8), tok)


# ---- a scripted reasoning output through every scorer -----------------------------------------------------------
GENERATION = [name for name, task in REGISTRY.items() if not task.evaluator]


@pytest.fixture(scope="module")
def tok():
    from longrecipe.base import model_dirs
    from longrecipe.base.tokenization import load_tokenizer

    return load_tokenizer(model_dirs.resolve("tiny"))


@pytest.fixture(scope="module")
def longbench_dir(tmp_path_factory) -> Path:
    """Two records of each LongBench file the suites read (written here; nothing is downloaded)."""
    d = tmp_path_factory.mktemp("longbench")
    v1 = [{"input": f"Which town is the mill {i} in?", "context": f"The mill {i} stands in Town{i}. " * 5,
           "answers": [f"Town{i}"], "length": 3000 * (i + 1), "dataset": "hotpotqa", "language": "en",
           "all_classes": None, "_id": str(i)} for i in range(2)]
    v2 = [{"_id": str(i), "domain": "d", "sub_domain": "s", "difficulty": "easy", "length": "short",
           "question": f"Where is mill {i}?", "choice_A": "Town0", "choice_B": "Town1", "choice_C": "Nowhere",
           "choice_D": "Everywhere", "answer": "AB"[i], "context": f"The mill {i} stands in Town{i}."}
          for i in range(2)]
    for name, rows in (("hotpotqa", v1), ("hotpotqa_e", v1), ("longbench_v2", v2)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _options(name: str, qa_files: dict[str, str], longbench_dir: Path) -> dict:
    """What a suite needs to build samples offline (its data files); other suites use their defaults."""
    if name == "ruler":
        return {"qa_squad": qa_files["qa_1"], "qa_hotpot": qa_files["qa_2"]}
    return {"dir": str(longbench_dir)} if name.startswith("longbench") else {}


def _groups(name: str, tok, options: dict) -> list[list[Sample]]:
    """2 samples per task at the shortest length that holds them, grouped as the runner scores them."""
    task, err = REGISTRY[name], None
    for length in (1024, 4096):
        try:
            made = task.samples(tok, length, 2, 1, dataclasses.replace(task.Options(), **options), log=lambda _: None)
        except (ValueError, FileNotFoundError) as e:  # a length too short for the tiny tokenizer, missing data
            err = e
            continue
        by_task: dict[str, list[Sample]] = {}
        for s in made:
            by_task.setdefault(s.task, []).append(s)
        return list(by_task.values())
    pytest.skip(f"{name} builds no samples offline: {err}")


# the answer each scorer parses, where a plain join of the references is not it
RIGHT = {"longbench_v2": lambda refs: f"The correct answer is ({refs[0]})",
         "graphwalks": lambda refs: f"[{', '.join(refs)}]"}


def _right(name: str, s: Sample) -> str:
    return RIGHT.get(name, " ".join)(s.references)


def _wrong(name: str, s: Sample) -> str:
    return f"The correct answer is ({'B' if s.references[0] == 'A' else 'A'})" if name == "longbench_v2" else \
        "none 0000000"


@pytest.mark.parametrize("name", GENERATION)
def test_every_scorer_scores_the_answer_not_the_thought(name, tok, qa_files, longbench_dir):
    """For each sample: the thought holds a wrong answer and the answer the right one, then the reverse; cut off,
    each scores exactly as the plain answer would (rows equal: values and nulls). Scored whole, at least one of the
    two moves the score; a thought that never closed scores as an empty answer, never as the right answer inside
    it; an answer that restates the prefix scores as the plain answer."""
    from longrecipe.evaluate.runner import _row

    task = REGISTRY[name]
    for group in _groups(name, tok, _options(name, qa_files, longbench_dir)):
        def score(texts: list[str], cut: bool = True) -> list:
            preds = [_row(s, t, THINK)["prediction"] if cut else t for s, t in zip(group, texts)]
            return task.score(preds, group)

        right, wrong = [_right(name, s) for s in group], [_wrong(name, s) for s in group]
        plain_right, plain_wrong, plain_empty = (task.score(x, group) for x in (right, wrong, [""] * len(group)))
        assert plain_right != plain_wrong and plain_right != plain_empty, (name, group[0].task)  # the check can see
        faked = [f"<think>Is it {w}? I think {w}.</think>\n{r}" for r, w in zip(right, wrong)]
        reverse = [f"<think>Is it {r}? Maybe.</think>\n\n{w}" for r, w in zip(right, wrong)]
        assert score(faked) == plain_right and score(reverse) == plain_wrong, (name, group[0].task)
        assert score(faked, cut=False) != plain_right or score(reverse, cut=False) != plain_wrong, name
        assert score([f"<think>It is {r}, let me check" for r in right]) == plain_empty, (name, group[0].task)
        restated = [f"<think>{w}</think>{s.answer_prefix.strip()} {r}" for s, r, w in zip(group, right, wrong)]
        assert score(restated) == plain_right, (name, group[0].task)


# ---- the runner: empties, the run, refusals ---------------------------------------------------------------------
def test_a_thought_that_never_ended_counts_as_empty(tmp_path):
    from longrecipe.evaluate.runner import Job, _row, build_config, check_empties

    cfg = build_config({"model": "tiny", "out": str(tmp_path), "think": "on", "think_tokens": 64})
    samples = [Sample(i, "Q?", ["42"], "", 10, "passkey", 128) for i in range(3)]
    job = Job("passkey", "passkey", 128, samples, think=THINK)
    preds = [_row(s, t, THINK) for s, t in zip(samples, ["<think>42 or 43", "<think>hm, 42?", "<think>x</think>42"])]
    assert [(p["prediction"], p["thinking_closed"]) for p in preds] == [("", False), ("", False), ("42", True)]
    job.path(tmp_path).parent.mkdir(parents=True)
    job.path(tmp_path).write_text("".join(json.dumps(p) + "\n" for p in preds))
    with pytest.raises(ValueError, match="2 of 3 answers are empty .* 2 of them are thoughts that never ended within "
                                         "--think-tokens 64"):
        check_empties(cfg, job, preds, tmp_path)
    assert [json.loads(x)["index"] for x in lines(job.path(tmp_path))] == [2]  # asked again by the same command


class Scripted:
    """A backend whose answers are written out here (the runner's other backends are tested against real models):
    what the two passes ask for, and what each pass answers, in full view."""

    tokenizer = None

    def __init__(self, answers: dict[str, str]):
        self.answers, self.asked = answers, []

    def generate(self, requests):
        from longrecipe.evaluate.backends import Completion

        self.asked.append(list(requests))
        out = []
        for r in requests:
            text = self.answers[r.prompt]
            cut = text.split(r.stop[0])[0] if r.stop and r.stop[0] in text else text
            ended = cut != text or len(text.split()) <= r.max_new_tokens
            out.append(Completion(cut, "stop" if ended else "length", min(len(text.split()), r.max_new_tokens)))
        return out


def test_two_passes_give_the_thought_and_the_answer_their_own_budgets():
    """Pass one: every prompt with the thought's budget, stopping at the end marker. Pass two, for the thoughts that
    ended: prompt + thought + end marker + the answer prefix, with the answer's own budget and stop strings."""
    think = Thinking("<think>", "</think>", 5)
    thought = "<think> it is 7 or 8, say 8 "
    script = {"Q1:": thought + "</think> ignored", "Q1:" + thought + "</think> The answer is": " 8.",
              "Q2:": "<think> a b c d e f g h", "Q3:": " The answer is 9"}
    inner = Scripted(script)
    backend = thinking.TwoPass(inner, think)
    asked = [thinking.AfterThought(q, 3, (".",), " The answer is") for q in ("Q1:", "Q2:", "Q3:")]
    got = backend.generate(asked)
    first, second = inner.asked
    assert [(r.prompt, r.max_new_tokens, r.stop) for r in first] == [(q, 5, ("</think>",)) for q in ("Q1:", "Q2:",
                                                                                                     "Q3:")]
    assert [(r.prompt, r.max_new_tokens, r.stop) for r in second] == [("Q1:" + thought + "</think> The answer is", 3,
                                                                       (".",))]
    assert [(str(g), g.closed) for g in got] == [(" 8", True), ("", False), ("9", True)]
    assert got[0].raw == thought + "</think> The answer is 8" and got[0].tokens == 5 + 1  # both passes counted
    assert got[1].raw == "<think> a b c d e f g h" and got[1].finish_reason == "length"
    assert not backend.streams  # the runner must not stream half-answered samples (a server's stream included)


def test_a_real_model_is_asked_the_answer_after_its_thought(tmp_path, tiny_dir):
    """The tiny model through both passes: the passkey prompt ends with "The pass key is", taken as the opening
    marker (as a chat template that opens the thought), and "8" as the end marker, so that pass one stops inside
    the number it writes. Each answer equals a direct greedy generation from prompt + thought + "8" (the answer
    pass, recomputed), and each raw generation is thought + marker + answer."""
    from longrecipe.base.tokenization import load_tokenizer
    from longrecipe.evaluate.backends import Request
    from longrecipe.evaluate.hf_backend import HFBackend
    from longrecipe.tasks import passkey

    out = tmp_path / "run"
    res = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "128", "--samples", "2", "--think",
              "key is,8", "--think-tokens", "8", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(x) for x in lines(out / "predictions" / "passkey" / "passkey" / "128.jsonl")]
    prompts = {d["index"]: d["input"] for d in passkey.generate(load_tokenizer(tiny_dir), 128, 2, 42)}
    hf = HFBackend(str(tiny_dir), device="cpu")
    assert len(rows) == 2 and all(r["thinking_closed"] and r["prediction"] for r in rows), rows
    for r in rows:
        thought = r["raw"][: len(r["raw"]) - len(r["prediction"]) - 1]
        assert r["raw"] == thought + "8" + r["prediction"] and "8" not in thought
        assert hf.generate([Request(prompts[r["index"]] + thought + "8", 10)])[0] == r["prediction"]


def test_a_thinking_run_asks_for_both_budgets_and_records_them(tmp_path):
    out = tmp_path / "run"
    res = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "128", "--samples", "2", "--think", "on",
              "--think-tokens", "6", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(x) for x in lines(out / "predictions" / "passkey" / "passkey" / "128.jsonl")]
    assert len(rows) == 2 and all(0 < r["generated_tokens"] <= 6 for r in rows), rows  # no thought: pass one only
    assert all(r["prediction"] == split(r["raw"]).answer and r["thinking_closed"] == split(r["raw"]).closed
               for r in rows), rows
    manifest = json.loads((out / "results.json").read_text())["manifest"]
    assert manifest["generation"] == {"passkey/passkey": {"max_new_tokens": 10, "stop": []}}
    assert manifest["thinking"] == {"start": "<think>", "end": "</think>", "think_tokens": 6,
                                    "answer_prefix": "sent after the thought"}
    saved = json.loads((out / "eval_config.json").read_text())
    assert (saved["think"], saved["think_tokens"]) == ("on", 6)
    assert (saved["identity"]["settings"]["think"], saved["identity"]["settings"]["think_tokens"]) == ("on", 6)
    again = cli("eval", "--model", "tiny", "--suite", "passkey", "--lengths", "128", "--samples", "2", "--think",
                "on", "--think-tokens", "7", "--out", str(out))
    one_line_exit_2(again, "think_tokens differs")


@pytest.mark.parametrize("flags, says", [
    (("--think", "<think>"), "think: expected 'on' or two different markers"),
    (("--think", ",</think>"), "think: expected"),
    (("--think", "<think>,<think>"), "think: expected"),
    (("--think", "on", "--think-tokens", "0"), "think_tokens: 0 must be >= 1"),
    (("--think-tokens", "64"), "it needs --think"),
])
def test_bad_thinking_flags_are_one_line(tmp_path, flags, says):
    res = cli("eval", "--model", "tiny", "--suite", "passkey", "--out", str(tmp_path / "run"), *flags)
    one_line_exit_2(res, says)
    assert not (tmp_path / "run").exists()
