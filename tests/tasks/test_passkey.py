"""Passkey (tasks/passkey.py): the scorer's exact-match rule."""

from __future__ import annotations

from longrecipe.tasks import passkey


def test_passkey_scoring():
    assert passkey.score(" 12345. Remember", "12345") == 1.0
    assert passkey.score(" 1234", "12345") == 0.0
    assert passkey.score("none", "12345") == 0.0
    assert passkey.score(" 123456", "12345") == 0.0


def test_empty_answers_are_counted_as_nulls_in_passkey_and_niah():
    """An empty answer (what a server gives past its RoPE window) is a null, as RULER counts its Nulls, not only a
    wrong answer: passkey's row and NIAH's per-depth rows carry n_null."""
    from longrecipe.tasks import niah
    from longrecipe.tasks.base import Sample

    samples = [Sample(index=i, input="p", references=["12345"], context_length=256, length=256) for i in range(4)]
    (row,) = passkey.TASK.score([" 12345", "", "  \n", " 999"], samples)
    assert (row.value, row.n, row.n_null) == (25.0, 4, 2)
    deep = [Sample(index=i, input="p", references=list(niah.REFERENCES), context_length=256, length=256, depth=d,
                   task="needle") for i, d in enumerate((0, 50))]
    assert [r.n_null for r in niah.TASK.score(["", "Eat a sandwich and sit in Dolores Park."], deep)] == [1, 0]
