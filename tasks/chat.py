"""The model's chat template around a task's user message (RULER, passkey): the answer prefix follows the
assistant turn's opening, and fitted lengths count the template's tokens, as RULER's model templates do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def wrapper(tokenizer: Any) -> Callable[[str], str]:
    """text -> the chat-formatted prompt of one user turn, ending where the assistant's answer begins."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("--chat-template: the model's tokenizer has no chat template")

    def wrap(text: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)

    return wrap
