"""Token and word types for the impactful-token analysis: a closed-class English lexicon plus a number pattern.

Why a lexicon: the analysis must run offline; closed classes (pronouns, auxiliaries, conjunctions, adpositions,
determiners) are small finite sets, and numbers are a pattern, so no tagger is needed. spaCy or NLTK can refine
ambiguous words (that, so, for) when installed, but results here never depend on them.
Types follow Universal Dependencies names: NUM, PRON, AUX, CCONJ, ADP, DET, PUNCT, other.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

TYPES = ("NUM", "PRON", "AUX", "CCONJ", "ADP", "DET", "PUNCT", "other")
PAPER_ANCHORS = ("NUM", "PRON", "AUX", "CCONJ", "ADP")

_WORDS = {
    "PRON": """i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it its
        itself we us our ours ourselves they them their theirs themselves who whom whose someone somebody something
        anyone anybody anything everyone everybody everything nobody nothing none one ones oneself""",
    "AUX": """be am is are was were been being have has had having do does did will would shall should can could may
        might must ought 're 's 've 'd 'll 'm""",
    "CCONJ": "and or but nor yet so",
    "ADP": """of in to for with on at from by about as into like through after over between out against during
        without before under around among up down off above below across behind beyond near since until upon within
        along toward towards via per despite except inside outside onto than""",
    "DET": "the a an this that these those each every some any no all another such either neither both",
    "NUM": """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
        seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million
        billion trillion dozen""",
}
LEXICON: dict[str, str] = {}
for _type in ("NUM", "DET", "ADP", "CCONJ", "AUX", "PRON"):  # later wins: "one" is PRON, "that" DET
    for _w in _WORDS[_type].split():
        LEXICON[_w] = _type
_NUMBER = re.compile(r"^[+-]?(\d+([.,:/]\d+)*%?|\d*\.\d+)$")


def word_type(word: str) -> str:
    """Type of one word (case-insensitive); numbers by pattern; punctuation-only strings are PUNCT."""
    w = word.strip()
    if not w:
        return "other"
    if _NUMBER.match(w):
        return "NUM"
    if all(c in string.punctuation for c in w):
        return "PUNCT"
    return LEXICON.get(w.lower(), "other")


def token_types(pieces: list[str]) -> list[str]:
    """Types of decoded tokens in sequence. A token gets its word's type only when it is the whole word (the
    word starts at this token and does not continue into the next); digits are NUM even when split one by one."""
    out = []
    for i, p in enumerate(pieces):
        core = p.strip()
        if core and (core.isdigit() or _NUMBER.match(core)):
            out.append("NUM")
            continue
        starts = p[:1].isspace() or i == 0 or not pieces[i - 1][-1:].isalnum() or not core[:1].isalnum()
        nxt = pieces[i + 1] if i + 1 < len(pieces) else " "
        ends = not (nxt[:1].isalnum() and core[-1:].isalnum())
        out.append(word_type(core) if starts and ends else "other")
    return out


WORD_RE = re.compile(r"\d+(?:[.,:/]\d+)*%?|[A-Za-z]+(?:'[a-z]+)?|[^\sA-Za-z\d]")


def sentence_types(sentence: str) -> set[str]:
    """The set of word types present in a sentence."""
    return {word_type(w) for w in WORD_RE.findall(sentence)}


def anchors_from(path: str | Path, k: int = 5) -> tuple[str, ...]:
    """The k most enriched types of a saved analysis (PUNCT and other excluded: they are not word classes)."""
    data = json.loads(Path(path).read_text())
    ranked = [t for t in data["enrichment"] if t not in ("PUNCT", "other")]
    return tuple(ranked[:k])
