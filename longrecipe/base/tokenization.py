"""Tokenizers without torch: loading (no remote code unless asked) and a stable identity for caches.

Why apart from modeling.py: the task generators need a tokenizer and its hash but never a model, and the tasks layer
imports no torch (checked by import-linter).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    # local: importing transformers' tokenizers imports torch (~5 s), and reports read the task registry torch-free
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


_TOKENIZER_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (size, hash)


def tokenizer_hash(tokenizer: Any) -> str:
    """Identity of a tokenizer for the cache: its full serialisation when fast, else its vocabulary.
    Memoised per tokenizer object (serialising a large vocabulary costs milliseconds per call, which dominated a
    cached re-run)."""
    return per_tokenizer(_TOKENIZER_HASHES, tokenizer, _tokenizer_hash)


def _tokenizer_hash(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def per_tokenizer(store: weakref.WeakKeyDictionary, tokenizer: Any, make: Any) -> Any:
    """make(tokenizer), remembered in `store` as long as the tokenizer lives; made again when a token is added
    to it (its size changes). Objects without a size or a weak reference (a bare callable) are not remembered."""
    try:
        hit, size = store.get(tokenizer), len(tokenizer)
    except TypeError:
        return make(tokenizer)
    if hit is None or hit[0] != size:
        hit = store[tokenizer] = (size, make(tokenizer))
    return hit[1]
