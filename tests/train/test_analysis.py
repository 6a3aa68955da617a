"""Impactful-token analysis and LongRecipe data selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import ROOT, cli
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from longrecipe.train import analysis, lexicon, rope
from longrecipe.train.config import DataConfig, TrainConfig


@pytest.fixture(scope="module")
def extended_dir(tiny_dir, tmp_path_factory):
    """The tiny base model with RoPE extended to 1024 (ntk-at-target): same family, same tokenizer."""
    out = tmp_path_factory.mktemp("ext")
    conf = AutoConfig.from_pretrained(tiny_dir)
    rope.apply(conf, "ntk-at-target", 1024)
    AutoModelForCausalLM.from_pretrained(tiny_dir, config=conf).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(out)
    return out

def builder(selection: str, **data):
    from longrecipe.train import data as D

    tok = AutoTokenizer.from_pretrained(ROOT / "longrecipe" / "assets" / "tiny-base")
    cfg = DataConfig(selection=selection, **data)
    return D.build(tok, cfg, TrainConfig(method="longrecipe", target_length=2048, train_length=614)), tok


def test_delta_matches_hand_computation(tiny_dir, extended_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    ext = AutoModelForCausalLM.from_pretrained(extended_dir)
    ids = torch.tensor([tok("The pass key is 12345. Remember it, then write it down.")["input_ids"]])
    lb, pb = analysis.next_token_scores(base, ids, chunk=3)
    le, pe = analysis.next_token_scores(ext, ids, chunk=100)
    with torch.no_grad():
        hb, he = base(ids).logits[0], ext(ids).logits[0]
    nxt = ids[0, 1:]
    for t in range(len(nxt)):  # by hand: the logit of the actual next token, and its log-softmax
        hand = float(he[t, nxt[t]] - hb[t, nxt[t]])
        assert float(le[0, t] - lb[0, t]) == pytest.approx(hand, abs=1e-4)
        assert float(pe[0, t]) == pytest.approx(float(torch.log_softmax(he[t], -1)[nxt[t]]), abs=1e-4)
    assert float((le - lb).abs().max()) > 0  # the RoPE change really changes the scores


def test_lexicon_on_hand_labelled_sentences():
    words = "She has 3 apples and he is in the house , but they were 2.5 km from it .".split()
    assert [lexicon.word_type(w) for w in words] == [
        "PRON", "AUX", "NUM", "other", "CCONJ", "PRON", "AUX", "ADP", "DET", "other", "PUNCT", "CCONJ", "PRON",
        "AUX", "NUM", "other", "ADP", "PRON", "PUNCT"]
    assert lexicon.sentence_types("Seven cats sat.") == {"NUM", "other", "PUNCT"}
    # token level: digits split one by one are NUM; a word piece inside a longer word is not its lookalike word
    pieces = ["<|bos|>", "The", " pass", " key", " is", " ", "1", "2", ".", " in", "side", " of"]
    assert lexicon.token_types(pieces) == ["other", "DET", "other", "other", "AUX", "other", "NUM", "NUM",
                                           "PUNCT", "other", "other", "ADP"]


def test_shares_by_hand():
    # 1 window, 4 positions, 1 bucket, top 50 %: the two largest deltas are NUM and PRON
    deltas = np.array([[0.1, 5.0, 3.0, -1.0]])
    types = np.array([["DET", "NUM", "PRON", "NUM"]])
    rows = {r["type"]: r for r in analysis.shares(deltas, types, 1, 0.5)}
    assert rows["NUM"]["top_share"] == 0.5 and rows["PRON"]["top_share"] == 0.5 and rows["DET"]["top_share"] == 0
    assert rows["NUM"]["all_share"] == 0.5 and rows["DET"]["all_share"] == 0.25
    assert analysis.enrichment(list(rows.values()))["PRON"] == 2.0


def test_analyze_command(tmp_path, extended_dir):
    res = cli("analyze", "--base", "tiny", "--extended", str(extended_dir), "--out", str(tmp_path / "a"),
              "--window", "512", "--max-windows", "4", "--buckets", "4")
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((tmp_path / "a" / "token_types.json").read_text())
    assert data["windows"] == 4 and data["tokens"] == 4 * 511 and len(data["rows"]) == 4 * len(lexicon.TYPES)
    for b in range(4):
        assert sum(r["top_share"] for r in data["rows"] if r["bucket"] == b) == pytest.approx(1.0)
    assert (tmp_path / "a" / "token_types.csv").read_text().startswith("bucket,start,end,type,")
    assert (tmp_path / "a" / "token_types.png").stat().st_size > 10_000
    assert "enrichment" in res.stdout


def test_impactful_samples_are_exact_and_sentence_aligned():
    b, tok = builder("impactful", keep_other=0.0)
    seen: list[list[int]] = []
    positions = b._positions
    b._positions = lambda lengths, rng: (seen.append(list(lengths)), positions(lengths, rng))[1]
    doc = b.docs[0]
    bounds = np.concatenate([doc.starts, [len(doc.ids)]])
    sentences = {tuple(doc.ids[x:y].tolist()) for x, y in zip(bounds[:-1], bounds[1:])}
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids, pos, _, _ = b.sample(rng)
        lengths = seen[-1]
        assert len(ids) == len(pos) == 614 == sum(lengths) and max(pos) < 2048 and pos[0] == 0
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for k, (st, ln) in enumerate(zip(starts, lengths)):
            piece = tuple(ids[st : st + ln])
            # each segment is one whole sentence of the very text (the last may be cut to fit) with an anchor
            full = piece if piece in sentences else None
            if full is None and k == len(lengths) - 1:
                full = next((s for s in sentences if s[:ln] == piece and
                             lexicon.sentence_types(tok.decode(list(s))) & set(lexicon.PAPER_ANCHORS)), None)
            assert full is not None
            assert lexicon.sentence_types(tok.decode(list(full))) & set(lexicon.PAPER_ANCHORS)
        for st, ln in zip(starts, lengths):  # positions are contiguous inside each segment
            assert pos[st : st + ln] == list(range(pos[st], pos[st] + ln))
    from longrecipe.train.data import statistics

    stats = statistics(b, samples=16)
    assert 5 < stats["mean_segment"] < 300 and stats["mean_span"] > 614 and stats["max_span"] <= 2048


def test_digit_mode_keeps_only_digit_sentences():
    b, tok = builder("impactful", anchor_mode="digit", keep_other=0.0)
    ids, pos, _, _ = b.sample(np.random.default_rng(1))
    runs = np.split(np.arange(len(ids)), np.flatnonzero(np.diff(pos) != 1) + 1)
    assert all(any(c.isdigit() for c in tok.decode([ids[i] for i in r])) for r in runs[:-1])


def test_trainer_with_impactful_selection(tmp_path):
    res = cli("train", "--config", str(ROOT / "train" / "configs" / "tiny_longrecipe.yaml"), f"out={tmp_path}",
              "train.steps=2", "train.batch_size=2", "train.threads=1", "data.selection=impactful",
              "data.anchors=[NUM,PRON]")
    assert res.returncode == 0, res.stderr[-2000:]
    bad = cli("train", "--config", str(ROOT / "train" / "configs" / "tiny_longrecipe.yaml"), f"out={tmp_path}/b",
              "data.anchors=[NOUNS]")
    assert bad.returncode == 2 and "unknown type 'NOUNS'" in bad.stderr
