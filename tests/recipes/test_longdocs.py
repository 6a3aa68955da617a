"""Long training documents (longrecipe/recipes/longdocs.py): retrieval episodes in the base model's formats."""

from __future__ import annotations

import numpy as np


def test_long_documents(tiny):
    """Retrieval documents: episodes in the base model's row formats (passkey; RULER's needle sentence with number,
    word and uuid values, asked one key at a time, all values of one key, or several keys at once); every answer
    value is the value of the needle it names, which comes before it in the same episode; needle-to-question
    distances cover the whole target window; answers are most of the targets."""
    import re

    from longrecipe.recipes.longdocs import INTRO, retrieval_document
    from longrecipe.tasks import passkey

    _, tok = tiny
    rng = np.random.default_rng(0)
    dist, answer_chars, prose_chars, kinds, pk, multi = [], 0, 0, {}, 0, 0
    intro = INTRO.split("{")[0]  # "Some special magic "
    for _ in range(24):
        doc, spans = retrieval_document(tok, 1152, rng, target=1024)
        assert len(tok(doc, add_special_tokens=False)["input_ids"]) >= 1152
        assert doc.startswith((intro, passkey.PREFIX))
        needles = dict(re.findall(r"One of the special magic \w+ for (\S+) is: (\S+)\.", doc))
        for key, value in re.findall(r"for (\S+) mentioned in the provided text is (\S+)\.", doc):
            assert needles[key] == value
        for span in spans:
            if len(span) == 2:  # a prose target
                prose_chars += span[1] - span[0]
                continue
            a, b, n0, n1 = span
            answer, needle, between = doc[a:b], doc[n0:n1], doc[n1:a]
            # " value." with its space: after "is" a byte-level BPE model emits " " before digits, and " word" is
            # one token; without the space as a target, word answers taught "is -> a word" and numbers were lost
            assert re.fullmatch(r" [\w-]+[.,]", answer) and n1 <= a
            assert needle.endswith(f" is:{answer[:-1]}.") or needle.startswith(f"The pass key is{answer[:-1]}.")
            assert intro not in between and passkey.PREFIX not in between  # the same episode
            kind = re.match(r"One of the special magic (\w+)", needle)
            if kind:
                kinds[kind.group(1)] = kinds.get(kind.group(1), 0) + 1
            pk += needle.startswith("The pass key is")
            multi += answer.endswith(",")
            answer_chars += b - a
            dist.append(len(tok(between, add_special_tokens=False)["input_ids"]))
    assert sorted(kinds) == ["numbers", "uuids", "words"] and min(kinds.values()) > 5 and pk > 5 and multi > 5
    assert sum(kinds.values()) + pk == len(dist)
    assert answer_chars > 2 * prose_chars
    # questions come from right after their needle to as far as the whole window
    assert min(dist) < 100 and max(dist) > 850 and 150 < float(np.median(dist)) < 700
