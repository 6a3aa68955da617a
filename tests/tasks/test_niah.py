"""Needle in a Haystack: the original grid, buffer and sentence-boundary insertion."""

from __future__ import annotations

import pytest

from longrecipe.tasks import niah


@pytest.fixture(scope="module")
def tok(tiny):
    return tiny[1]


def test_default_grid_by_hand():
    lengths, depths = niah.default_lengths(), niah.default_depths()
    assert len(lengths) == len(depths) == 35
    # linspace(1000, 16000, 35): step 15000/34 = 441.18 -> 1000, 1441, 1882, ..., 16000
    assert lengths[:3] == [1000, 1441, 1882] and lengths[-1] == 16000
    # linspace(0, 100, 35): step 2.94 -> 0, 3, 6, 9, 12, 15, ...
    assert depths[:6] == [0, 3, 6, 9, 12, 15] and depths[-1] == 100


@pytest.mark.parametrize("depth", [0, 25, 50, 99, 100])
def test_insertion_at_sentence_boundary_with_buffer(tok, depth):
    hay = niah.haystack_tokens(tok, None, 2000)
    ids, pos = niah.insert(tok, hay[:1000], [niah.NEEDLE], float(depth), 1000)
    needle = tok(niah.NEEDLE, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1000 - niah.BUFFER  # haystack cut so that haystack + needle leave the 200-token buffer
    assert ids[pos : pos + len(needle)] == needle
    period = tok(".", add_special_tokens=False)["input_ids"]
    if depth == 100:
        assert pos == len(ids) - len(needle)
    elif pos > 0:
        assert ids[pos - 1] in period  # right after the end of a sentence
        assert pos <= int((1000 - niah.BUFFER - len(needle)) * depth / 100)


def test_grid_samples(tok):
    samples = niah.generate(tok, lengths=[600, 1000], depths=[0, 50, 100])
    assert [(s["context_length"], s["depth"]) for s in samples] == [(600, 0), (600, 50), (600, 100),
                                                                   (1000, 0), (1000, 50), (1000, 100)]
    for s in samples:
        assert "Dolores Park" in s["input"] and s["input"].startswith(niah.SYSTEM)
        assert s["input"].rstrip().endswith(niah.QUESTION + niah.QUESTION_SUFFIX)
        assert s["context_length"] - niah.BUFFER - 5 <= s["length"] <= s["context_length"]
    with pytest.raises(ValueError, match="buffer"):
        niah.generate(tok, lengths=[150], depths=[0])


def test_multi_needle_order(tok):
    hay = niah.haystack_tokens(tok, None, 1500)
    ids, _ = niah.insert(tok, hay[:1500], niah.MULTI_NEEDLES, 10.0, 1500)
    text = tok.decode(ids)
    spots = [text.find(n.strip()) for n in niah.MULTI_NEEDLES]
    assert all(p >= 0 for p in spots) and spots == sorted(spots)


def test_score_by_hand():
    assert niah.score("Eat a sandwich and sit in Dolores Park.", niah.REFERENCES) == 100.0
    assert niah.score("eat a sandwich", niah.REFERENCES) == 50.0
    assert niah.score("go to the beach", niah.REFERENCES) == 0.0
