"""Attention is not changed by position gaps: tokens after a gap see tokens before it, in every implementation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from longrecipe.train.loop import training_loss

GAP_POS = torch.tensor([list(range(20)) + list(range(700, 720))])

def grad_of_late_loss_wrt_early_inputs(model, batch) -> torch.Tensor:
    """d(loss on the tokens after the gap) / d(embeddings of the tokens before it)."""
    emb = model.get_input_embeddings()
    captured = {}

    def hook(_m, _i, out):
        out.retain_grad()
        captured["e"] = out

    h = emb.register_forward_hook(hook)
    labels = batch["input_ids"].clone()
    labels[:, :21] = -100  # loss only on tokens after the gap
    loss = training_loss(model, {**batch, "labels": labels})
    loss.backward()
    h.remove()
    return captured["e"].grad[0, :20].abs().sum()


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_tokens_after_gap_attend_before_it(tiny_dir, impl, checkpointing):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation=impl)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(3, 2000, (1, 40), generator=torch.Generator().manual_seed(0))
    assert grad_of_late_loss_wrt_early_inputs(model, {"input_ids": ids, "position_ids": GAP_POS}) > 0


def test_the_trap_exists_without_our_mask(tiny_dir):
    # transformers alone (no mask, no cache) cuts attention at the gap; our loss does not.
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="sdpa")
    ids = torch.randint(3, 2000, (1, 40), generator=torch.Generator().manual_seed(1))
    hf = model(input_ids=ids, position_ids=GAP_POS, labels=ids, use_cache=False).loss
    full = model(input_ids=ids, position_ids=GAP_POS, labels=ids, use_cache=False,
                 attention_mask=torch.ones_like(ids)).loss
    ours = training_loss(model, {"input_ids": ids, "position_ids": GAP_POS, "labels": ids})
    assert not torch.isclose(hf, full) and torch.isclose(ours, full, rtol=1e-5)


def test_implementations_and_chunks_agree(tiny_dir):
    ids = torch.randint(3, 2000, (2, 40), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "position_ids": GAP_POS.expand(2, -1), "labels": ids}
    losses = []
    for impl in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation=impl)
        losses += [training_loss(model, batch), training_loss(model, batch, chunk=7)]
    ref = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")
    full = ref(input_ids=ids, position_ids=batch["position_ids"], labels=ids, attention_mask=torch.ones_like(ids))
    for loss in losses:
        assert torch.isclose(loss, full.loss, rtol=1e-5), (loss, full.loss)


def test_packed_documents_are_isolated(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="sdpa")
    ids = torch.randint(3, 2000, (1, 30), generator=torch.Generator().manual_seed(3))
    docs = torch.tensor([[0] * 12 + [1] * 18])
    pos = torch.tensor([list(range(12)) + list(range(18))])
    packed = training_loss(model, {"input_ids": ids, "position_ids": pos, "labels": ids, "doc_ids": docs})
    # the same two documents run separately: token-weighted mean of their losses (first token of doc 2 unscored)
    a = model(input_ids=ids[:, :12], labels=ids[:, :12]).loss
    b = model(input_ids=ids[:, 12:], labels=ids[:, 12:]).loss
    assert torch.isclose(packed, (a * 11 + b * 17) / 28, rtol=1e-5)
    eager = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")
    assert torch.isclose(training_loss(eager, {"input_ids": ids, "position_ids": pos, "labels": ids,
                                               "doc_ids": docs}), packed, rtol=1e-5)
