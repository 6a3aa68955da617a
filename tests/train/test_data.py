"""Training rows (train/data.py): every method takes its view of the same windows, answers are targets only after
their needle, loss spans make completion-only labels, plain rows, and a step without targets."""

from __future__ import annotations

import json

import numpy as np
import torch
from helpers import cli


def test_an_answer_is_a_target_only_where_its_needle_is_before_it():
    from longrecipe.train.data import Document, row_targets

    loss = np.zeros(100, bool)
    loss[50:55] = True  # an answer at 50-54 retrieved from the needle at 10-19
    loss[70:72] = True  # a target that needs nothing
    doc = Document(ids=np.arange(100), starts=np.array([0]), loss=loss, deps=np.array([[50, 55, 10, 20]]))
    full = row_targets(doc, np.arange(0, 100))
    assert full.tolist() == loss.tolist()
    cut = row_targets(doc, np.arange(15, 100))  # half the needle cut away: the answer is not a target
    assert not cut[50 - 15:55 - 15].any() and cut[70 - 15:72 - 15].all()
    gap = row_targets(doc, np.concatenate([np.arange(5, 25), np.arange(45, 60)]))  # a PoSE-like row keeps it
    assert gap[20 + 5:20 + 10].all()
    after = row_targets(doc, np.concatenate([np.arange(40, 60), np.arange(0, 30)]))  # needle after the answer
    assert not after[10:15].any()


def test_every_method_takes_its_view_of_the_same_windows(tmp_path, tiny):
    """Row i of step s comes from the same target-length window for every method: each contiguous run of a
    method's row (positions + 1) is a piece of FLT's row; answers are most of every method's targets."""
    from longrecipe.recipes.longdocs import write_corpus
    from longrecipe.train.config import DataConfig, TrainConfig
    from longrecipe.train.data import build, row_targets
    from longrecipe.train.loop import IGNORE

    _, tok = tiny
    path = tmp_path / "long.jsonl"
    write_corpus(path, tok, 2048, retrieval_docs=24, seed=3)  # the demo's scale: 2048, its methods at 614
    flt = build(tok, DataConfig(source=str(path)), TrainConfig(method="flt", target_length=2048, train_length=2048))
    ref = flt.batch(5, 2, 0, 0, 6)["input_ids"].tolist()
    for method, selection in (("pose", "none"), ("randpos", "none"), ("longrecipe", "impactful"),
                              ("longrecipe", "random")):
        b = build(tok, DataConfig(source=str(path), selection=selection, anchor_mode="digit"),
                  TrainConfig(method=method, target_length=2048, train_length=614))
        pieces: list[list[int]] = []  # LongRecipe's segment lengths (a zero gap can join two sentences' positions)
        positions = b._positions
        b._positions = lambda lengths, rng: (pieces.append(list(lengths)), positions(lengths, rng))[1]
        batch = b.batch(5, 2, 0, 0, 6)
        for k, (row, pos, window) in enumerate(zip(batch["input_ids"].tolist(), batch["position_ids"].tolist(), ref)):
            cuts = [0] + [i for i in range(1, len(pos)) if pos[i] != pos[i - 1] + 1] + [len(pos)]
            if method == "longrecipe":
                cuts = [0, *np.cumsum(pieces[k]).tolist()]
            text = " " + " ".join(map(str, window)) + " "
            for a, z in zip(cuts[:-1], cuts[1:]):
                assert " " + " ".join(map(str, row[a:z])) + " " in text, (method, selection)
        answers = targets = 0
        rng = np.random.default_rng(0)
        for _ in range(64):
            index, lo = b._draw_window(rng)
            doc = b.docs[index]
            idx, _ = b.BUILDERS[method](b, rng, doc, index, lo)
            keep = row_targets(doc, idx)
            is_answer = np.zeros(len(doc.ids), bool)
            for a0, a1, _, _ in doc.deps:
                is_answer[a0:a1] = True
            answers += int((keep & is_answer[idx]).sum())
            targets += int(keep.sum())
        assert targets and answers >= 0.5 * targets, (method, answers, targets)
        assert int((batch["labels"] != IGNORE).sum()) <= int(keep.size) * 6


def test_plain_rows_are_the_same_rows_for_every_method_and_leave_flt_unchanged(tmp_path, tiny):
    """data.plain_fraction: the rows drawn plain are the same for every method (the window stream decides), a plain
    row is contiguous tokens of its window at positions 0..n-1, the other rows are the method's own view, and FLT
    (plain already) trains on exactly the rows it had without the option."""
    from longrecipe.recipes.longdocs import write_corpus
    from longrecipe.train.config import DataConfig, TrainConfig
    from longrecipe.train.data import build

    _, tok = tiny
    path = tmp_path / "long.jsonl"
    write_corpus(path, tok, 1024, retrieval_docs=8, seed=4)
    full = TrainConfig(method="flt", target_length=1024, train_length=1024)
    flt = [build(tok, DataConfig(source=str(path), plain_fraction=f), full).batch(1, 3, 0, 0, 16) for f in (0, .5)]
    assert all(torch.equal(flt[0][k], flt[1][k]) for k in flt[0])
    plain_rows = {}
    for method in ("pose", "randpos"):
        train = TrainConfig(method=method, target_length=1024, train_length=307)
        off = build(tok, DataConfig(source=str(path)), train).batch(1, 3, 0, 0, 16)
        on = build(tok, DataConfig(source=str(path), plain_fraction=0.5), train).batch(1, 3, 0, 0, 16)
        plain = [r for r, pos in enumerate(on["position_ids"].tolist()) if pos == list(range(307))]
        plain_rows[method] = plain
        for r in range(16):
            row, window = on["input_ids"][r].tolist(), flt[0]["input_ids"][r].tolist()
            if r in plain:
                assert " " + " ".join(map(str, row)) + " " in " " + " ".join(map(str, window)) + " "
            else:
                assert torch.equal(on["input_ids"][r], off["input_ids"][r])
                assert torch.equal(on["position_ids"][r], off["position_ids"][r])
    assert plain_rows["pose"] == plain_rows["randpos"] and 3 <= len(plain_rows["pose"]) <= 13


def test_loss_spans_make_completion_only_labels(tmp_path, tiny):
    """A JSONL row's loss_spans: only tokens overlapping them are targets, in every method's rows."""
    from longrecipe.train.config import DataConfig, TrainConfig
    from longrecipe.train.data import build
    from longrecipe.train.loop import IGNORE

    _, tok = tiny
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    spans = [[m, m + 3] for m in range(0, len(text), 97)]
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": text, "loss_spans": spans}) + "\n")
    data = DataConfig(source=str(path))
    for method, length in (("flt", 256), ("pose", 64), ("randpos", 64), ("longrecipe", 64)):
        b = build(tok, data, TrainConfig(method=method, target_length=256, train_length=length))
        batch = b.batch(0, 0, 0, 0, 4)
        kept = batch["labels"] != IGNORE
        assert 0 < int(kept.sum()) < kept.numel() // 4, method
        assert torch.equal(batch["labels"][kept], batch["input_ids"][kept])
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    flags = [any(a < e and o > s for s, e in spans) for a, o in enc["offset_mapping"]]
    rows = build(tok, data, TrainConfig(method="flt", target_length=256, train_length=256)).batch(0, 0, 0, 0, 1)
    ids = rows["input_ids"][0].tolist()
    lo = next(i for i in range(len(enc["input_ids"])) if enc["input_ids"][i : i + 256] == ids)
    assert (rows["labels"][0] != IGNORE).tolist() == flags[lo : lo + 256]


def test_a_step_without_targets_trains_on_nothing(tmp_path):
    """Rows whose every answer lost its needle hold no target: such a step has loss 0 and changes nothing."""
    text = " ".join(f"Sentence number {i} is here." for i in range(300))
    spans = [[m, m + 5, m + 100, m + 110] for m in range(0, len(text) - 200, 150)]  # each needle after its answer
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": text, "loss_spans": spans}) + "\n")
    res = cli("train", "--config", "train/configs/tiny_pose.yaml", f"out={tmp_path / 'o'}", f"data.source={path}",
              "train.steps=2", "train.batch_size=2", "train.train_length=64", "train.target_length=256",
              "train.threads=1", "train.save_every=0")
    assert res.returncode == 0, res.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "o" / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == [0.0, 0.0] and [r["tokens"] for r in log] == [0, 0]
