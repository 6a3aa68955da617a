"""Passkey (tasks/passkey.py): the scorer's exact-match rule."""

from __future__ import annotations

from longrecipe.tasks import passkey


def test_passkey_scoring():
    assert passkey.score(" 12345. Remember", "12345") == 1.0
    assert passkey.score(" 1234", "12345") == 0.0
    assert passkey.score("none", "12345") == 0.0
    assert passkey.score(" 123456", "12345") == 0.0
