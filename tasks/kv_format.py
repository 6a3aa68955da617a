"""The prompt formats the embedded tiny base model is trained in (longrecipe/recipes/tinybase/) and the long
training documents (longrecipe/recipes/longdocs.py) are written in: key-value needles, RULER's noise filler and
RULER's NIAH needle and question (derived from tasks/ruler/ruler_niah.py, so they follow its wording).

Torch-free text constants, here in `tasks/` beside the suites whose wording they copy, so that the recipes that
build training rows from them need not import one another.
"""

from __future__ import annotations

import re

from longrecipe.base import corpus
from longrecipe.tasks.ruler import ruler_niah

NOISE = corpus.FILLER  # RULER's noise haystack sentence
KV_NEEDLE = "One of the special magic numbers for {key} is: {value}."
KV_QUESTION = ("What is the special magic number for {key} mentioned in the provided text? The special magic number "
               "for {key} mentioned in the provided text is")
KV_INTRO = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards."
)


def _needle_pattern() -> re.Pattern:
    """RULER's needle sentence as a regex (groups: value kind, key, value), from the task's own template."""
    parts = re.split(r"\{(\w+)\}", ruler_niah.NEEDLE)  # literal, field, literal, field, ...
    fields = {"type_needle_v": r"(numbers|words|uuids)", "key": r"(.+?)", "value": r"([^\s.]+)"}
    return re.compile("".join(fields[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)))


RULER_NEEDLE = _needle_pattern()
RULER_QUESTION = ruler_niah.TEMPLATE.rsplit("\n", 1)[1] + ruler_niah.ANSWER_PREFIX  # RULER's question + answer prefix
