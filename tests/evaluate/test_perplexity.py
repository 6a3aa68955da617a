"""Perplexity by length (evaluate/perplexity.py) by hand, and the base model's perplexity beyond its window."""

from __future__ import annotations

import pytest
import torch


def test_perplexity_by_length_by_hand(tiny_dir, tiny):
    """ppl suite: every length scores the same tokens; the value is exp(mean next-token NLL) of its windows."""
    import math

    from longrecipe.evaluate.perplexity import heldout_texts, run_perplexity, token_stream

    model, tok = tiny
    rows = run_perplexity(tiny_dir, [256, 512], windows_at_longest=2, log=lambda s: None)
    stream = token_stream(tok, heldout_texts())
    budget = 2 * 511
    assert [r.n for r in rows] == [budget // 255, budget // 511] == [4, 2]
    nll, count = 0.0, 0
    for j in range(4):
        ids = torch.tensor([[tok.bos_token_id] + stream[j * 255 : (j + 1) * 255]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
        count += 255
    assert rows[0].value == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert rows[0].suite == "ppl" and rows[0].context_length == 256 and rows[0].metric == "perplexity"


def test_base_model_perplexity_grows_beyond_its_window(tiny_dir):
    from longrecipe.evaluate.perplexity import run_perplexity

    short, long = run_perplexity(tiny_dir, [256, 2048], windows_at_longest=2, log=lambda s: None)
    assert long.value > 1.15 * short.value  # measured: 361 at 256, 473 at 2048
