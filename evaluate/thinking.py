"""Reasoning models scored fairly (`--think`): the thought is cut off before any suite scores the answer.

Why: a reasoning model writes a thought, then its answer. Scored whole, a guess inside the thought counts as the
answer: passkey takes the first number, LongBench v2 the first "The correct answer is", RULER and NIAH find a
needle the model only considered (lm-eval saw the same with regexes that pick a match inside the thinking:
EleutherAI/lm-evaluation-harness#3675). So the text scored is what follows the LAST end marker, and a thought still
open when the tokens ran out is an empty answer (a null, `thinking_closed: false` in its prediction row), never the
thought. The runner applies this in one place (`runner._row`) before any suite's `score`, so every scorer gets it.

Budgets: the thought has `think_tokens` of its own on top of each sample's answer budget, in one request of both
(as RULER's port in scitix/sieval#11 asks: max_tokens = the answer's budget + the thinking budget).

Answer prefixes: RULER and NIAH end the prompt with the start of the answer ("... mentioned in the provided text
is"); under a chat template it opens the assistant's turn (RULER's scripts/data/prepare.py: the model template,
then the answer prefix; NVIDIA/RULER#108 re-joined `input + answer_prefix` where a request path had dropped it).
For a reasoning model that spot is where its thought begins: a forced prefix there makes it answer without
thinking or think inside the sentence (lm-eval#3403: `gen_prefix` "prevents models to use think tokens";
NVIDIA-NeMo/Gym#998: continuing the assistant message works in non-reasoning mode only). With `--think` the prefix
is therefore not sent (the manifest says so); the question itself still asks for the answer. The scorers here read
the model's words AFTER the prefix (a prediction never holds the prefix), so an answer that restates the prefix has
it removed: every scorer sees the text it would see without thinking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from longrecipe.base.config import ConfigError

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
