"""RoPE: the paper's NTK theta, complete rope_parameters, and a model that builds after the change."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from longrecipe.train import rope


def test_ntk_theta_paper_values():
    # theta * (factor * T / L - (factor - 1)) ** (d / (d - 2)), by hand:
    # Llama-3-8B: 500000 * (10 * 10 - 9) ** (128 / 126) = 500000 * 91 ** 1.015873 = 48.88M
    assert rope.ntk_theta(500000, 8192, 81920, 10, 128) == pytest.approx(500000 * 91 ** (128 / 126))
    assert rope.ntk_theta(500000, 8192, 81920, 10, 128) / 1e6 == pytest.approx(48.877, abs=0.01)
    # Qwen2-7B: 1e6 * (4 * 4 - 3) ** (128 / 126) = 13.54M
    assert rope.ntk_theta(1e6, 32768, 131072, 4, 128) / 1e6 == pytest.approx(13.540, abs=0.01)
    assert rope.ntk_theta(10000, 256, 2048, 1, 32) == pytest.approx(10000 * 8 ** (32 / 30))


@pytest.mark.parametrize("method", rope.METHODS)
def test_every_method_builds_a_working_model(tiny_dir, method):
    conf = AutoConfig.from_pretrained(tiny_dir)
    rope.apply(conf, method, 2048)
    params = conf.rope_parameters
    assert conf.max_position_embeddings == 2048 and params["rope_theta"] > 0
    if method in ("yarn", "llama3"):
        assert params["original_max_position_embeddings"] == 256 and params["factor"] == 8
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, config=conf)
    out = model(input_ids=torch.tensor([[1, 2, 3]]), position_ids=torch.tensor([[0, 900, 2000]]))
    assert torch.isfinite(out.logits).all()


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown rope.method"):
        rope.rope_parameters(AutoConfig.for_model("llama"), "xpos", 10)
