"""Training FLOPs (train/flops.py) counted by hand."""

from __future__ import annotations

import pytest

from longrecipe.train.flops import forward_flops, linear_params, training_flops

TINY = {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 512,
        "num_hidden_layers": 2, "vocab_size": 2048}


def test_flops_by_hand():
    # per layer: q,o 128x128 each + k,v 128x128 each (4 kv heads of 32) + 3 x 128x512 (SwiGLU) = 262,144
    # 2 layers + LM head 128 x 2048 = 786,432 linear parameters
    assert linear_params(TINY) == 786_432
    # 256 tokens: 2 x 786,432 x 256 = 402,653,184; attention 2 x 2 x 2 layers x 256^2 x 128 / 2 = 33,554,432
    assert forward_flops(TINY, 256) == 436_207_616
    # training = 3 forwards; 8 rows
    assert training_flops(TINY, 256, 8) == 3 * 8 * 436_207_616
    # grouped-query attention: 1 KV head shrinks k and v to 128 x 32 each
    assert linear_params({**TINY, "num_key_value_heads": 1}) == 786_432 - 2 * 2 * 128 * 96


def test_flops_grow_quadratically_only_in_attention():
    short, long = forward_flops(TINY, 614), forward_flops(TINY, 2048)
    linear = 2 * 786_432
    assert long - linear * 2048 == pytest.approx((2048 / 614) ** 2 * (short - linear * 614))
