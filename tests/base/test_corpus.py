"""The built-in text (longrecipe.base.corpus): held-out paragraphs never appear in the training corpus."""

from __future__ import annotations


def test_heldout_text_is_not_in_the_training_corpus():
    from longrecipe.base import corpus

    held = corpus.heldout_paragraphs()
    train = set(corpus.paragraphs())
    assert len(held) > 100 and not (set(held) & train)
    assert not set(corpus.HELDOUT_MODULES) & set(corpus.DOC_MODULES)
