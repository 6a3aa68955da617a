"""Reasoning models scored fairly (`--think`): the thought is cut off before any suite scores the answer.

Why: a reasoning model writes a thought, then its answer. Scored whole, a guess inside the thought counts as the
answer: passkey takes the first number, LongBench v2 the first "The correct answer is", RULER and NIAH find a
needle the model only considered (lm-eval saw the same with regexes that pick a match inside the thinking:
EleutherAI/lm-evaluation-harness#3675). So the text scored is what follows the LAST end marker, and a thought still
open when the tokens ran out is an empty answer (a null, `thinking_closed: false` in its prediction row), never the
thought. The runner applies this in one place (`runner._row`) before any suite's `score`, so every scorer gets it.

Budgets, in two passes per sample (`TwoPass`, around any backend): the thought is generated until its end marker
with `think_tokens` of its own; then the prompt, the thought, the end marker and the sample's answer prefix are sent
again and the answer gets the sample's own budget (a long thought never eats the answer's tokens; a one-request
budget of both, as scitix/sieval#11 does, would). A thought that uses all its tokens without ending is an empty
answer; a generation that opens no thought is the answer itself (a model that did not think).

Answer prefixes: RULER and NIAH end the prompt with the start of the answer ("... mentioned in the provided text
is"); under a chat template it opens the assistant's turn (RULER's scripts/data/prepare.py: the model template,
then the answer prefix; NVIDIA/RULER#108 re-joined `input + answer_prefix` where a request path had dropped it).
For a reasoning model that spot is where its thought begins: a forced prefix there makes it answer without
thinking or think inside the sentence (lm-eval#3403: `gen_prefix` "prevents models to use think tokens";
NVIDIA-NeMo/Gym#998: continuing the assistant message works in non-reasoning mode only). With `--think` the prefix
therefore goes after the thought, at the start of the answer pass, where it means what it means without thinking;
the prediction is the continuation after it, as the scorers read it. (A generation scored without the second pass,
e.g. a model that did not think, has a restated prefix removed: every scorer sees the text it would see.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from longrecipe.base.config import ConfigError
from longrecipe.evaluate.backends import Completion, Request

DEFAULT_PAIR = ("<think>", "</think>")


@dataclass(frozen=True)
class Thinking:
    """The markers of a thought and its own token budget (on top of each sample's answer budget)."""

    start: str
    end: str
    tokens: int


class Split(NamedTuple):
    answer: str  # what the suite scores
    thought: str  # everything before it
    closed: bool  # False: the thought was still open when the generation ended (the answer is empty)


def parse(value: str | None) -> tuple[str, str] | None:
    """`--think` as a marker pair: None (off), 'on' (<think>,</think>) or 'START,END'. A value that is not one of
    those is a one-line error: a wrong pair would silently score the thought as the answer."""
    if value is None:
        return None
    if value.strip().lower() == "on":
        return DEFAULT_PAIR
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts) or parts[0].strip() == parts[1].strip():
        raise ConfigError(f"think: expected 'on' or two different markers START,END (e.g. <think>,</think>), "
                          f"got {value!r}")
    return parts[0].strip(), parts[1].strip()


def from_config(cfg: Any) -> Thinking | None:
    """The run's thinking setting (None: answers are scored as generated)."""
    pair = parse(cfg.think)
    return Thinking(*pair, cfg.think_tokens) if pair else None


def check_config(cfg: Any) -> None:
    """One-line errors before anything runs: a malformed pair, or a thinking budget given without --think (the
    budget alone would change nothing, silently)."""
    if parse(cfg.think) is None and cfg.think_tokens != type(cfg).think_tokens:
        raise ConfigError(f"think_tokens: {cfg.think_tokens} is the budget of a thought; it needs --think "
                          f"(e.g. --think on)")


def check_tokenizer(think: Thinking, tokenizer: Any) -> None:
    """Every backend decodes with special tokens dropped: a marker that is a special token of the model's tokenizer
    never reaches the text, and the thought would be scored as the answer. Refused in one line."""
    for marker in (think.start, think.end):
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if marker not in tokenizer.decode(ids, skip_special_tokens=True):
            raise ConfigError(f"think: {marker!r} is a special token of this tokenizer and the engines drop special "
                              f"tokens from the text; the thought could not be told from the answer")


def split(text: str, start: str = DEFAULT_PAIR[0], end: str = DEFAULT_PAIR[1], opened: bool = False) -> Split:
    """A generation as (answer, thought, closed). The answer is what follows the LAST end marker, stripped of
    whitespace. A start marker after it, or no end marker while a thought was opened (by the generation or, with
    `opened`, by the prompt: chat templates that end the assistant's opening with <think>), leaves the thought open:
    the budget ran out mid-thought and the answer is empty. No marker and nothing opened: the model did not think
    and the whole text is its answer."""
    cut = text.rfind(end)
    thought, rest = (text[: cut + len(end)], text[cut + len(end) :]) if cut >= 0 else ("", text)
    if start in rest or (cut < 0 and opened):
        return Split("", text, False)
    return Split(rest.strip(), thought, True)


def drop_prefix(answer: str, prefix: str) -> str:
    """The answer as the scorers read it without thinking, where the prefix sat in the prompt and the prediction is
    the model's continuation: a restated prefix is removed."""
    head = prefix.strip()
    return answer[len(head) :].lstrip() if head and answer.startswith(head) else answer


def scored(think: Thinking, text: str, prompt: str, prefix: str) -> Split:
    """What a suite scores of one generation: the answer after the thought, without a restated answer prefix.
    `prompt` is what was sent: a prompt ending with the start marker opened the thought itself."""
    found = split(text, think.start, think.end, opened=prompt.rstrip().endswith(think.start))
    return found._replace(answer=drop_prefix(found.answer, prefix))


@dataclass(frozen=True)
class AfterThought(Request):
    """A sample's request under --think: its prompt without the answer prefix, which the answer pass sends after
    the thought; `max_new_tokens` is the answer's own budget."""

    answer_prefix: str = ""


class Thought(Completion):
    """The answer pass's text (what the suites score) with the whole generation (`raw`: thought, end marker,
    prefix, answer) and whether the thought ended (`closed`)."""

    raw: str
    closed: bool

    def __new__(cls, text: str, raw: str, closed: bool, finish_reason: str | None = None,
                tokens: int | None = None) -> Thought:
        obj = super().__new__(cls, text, finish_reason, tokens)
        obj.raw, obj.closed = raw, closed
        return obj


class TwoPass:
    """Any backend asked in two passes (the module docstring says why): every thought of a batch, then every answer
    of the thoughts that ended. The runner sees a backend that generates Thoughts; everything else (tokenizer,
    settings, close) is the inner backend's. It does not stream: a sample is done only after its second pass."""

    streams = False

    def __init__(self, inner: Any, think: Thinking):
        self.inner, self.think = inner, think

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def completed(self, requests: Sequence[Request]) -> Any:
        return enumerate(self.generate(requests))

    def generate(self, requests: Sequence[Request]) -> list[Thought]:
        start, end = self.think.start, self.think.end
        first = self.inner.generate([Request(r.prompt, self.think.tokens, (end,)) for r in requests])
        out: list[Thought | None] = [None] * len(requests)
        again = []
        for i, (r, t) in enumerate(zip(requests, first, strict=True)):
            prefix = getattr(r, "answer_prefix", "")
            tokens = getattr(t, "tokens", None)
            if start not in t and not r.prompt.rstrip().endswith(start):  # no thought: this is the answer
                out[i] = Thought(drop_prefix(str(t).strip(), prefix), str(t), True, getattr(t, "finish_reason", None),
                                 tokens)
            elif getattr(t, "finish_reason", None) == "length":  # the thought used all its tokens, never ended
                out[i] = Thought("", str(t), False, "length", tokens)
            else:
                again.append(i)
        second = self.inner.generate([Request(requests[i].prompt + first[i] + end + getattr(requests[i],
                                                                                          "answer_prefix", ""),
                                              requests[i].max_new_tokens, requests[i].stop) for i in again])
        for i, a in zip(again, second, strict=True):
            spent = (getattr(first[i], "tokens", None) or 0) + (getattr(a, "tokens", None) or 0)
            raw = first[i] + end + getattr(requests[i], "answer_prefix", "") + a
            out[i] = Thought(str(a), raw, True, getattr(a, "finish_reason", None), spent or None)
        return out  # type: ignore[return-value]
