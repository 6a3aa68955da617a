"""The tiny-base recipe (longrecipe/recipes/tinybase/): stage 2 (v2) model surgery, its rows, batches, budget and
command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import cli


def test_v2_grow_preserves_the_function(tiny):
    import torch

    from longrecipe.recipes.tinybase.surgery import grow

    model, tok = tiny
    ids = torch.tensor([tok("The pass key is 12345. Remember it. What is the pass key?")["input_ids"]])
    for depth in (4, 8):  # 8: the fifth CPU attempt's depth (--num-layers 8)
        big = grow(model, depth, 512)
        with torch.no_grad():
            assert torch.equal(big(input_ids=ids).logits, model(input_ids=ids).logits)
        assert big.config.num_hidden_layers == depth and big.config.max_position_embeddings == 512


def test_v2_training_content_is_disjoint_from_evaluation(tiny):
    """The stage-2 RULER rows use their own haystack (the Python corpus, never the essays) and content seeds above
    every evaluation seed; no training answer is an answer of the evaluation samples."""
    from longrecipe.recipes.tinybase.config import TRAIN_SEED_BASE, TinyBaseV2Config
    from longrecipe.recipes.tinybase.rows import RulerRows
    from longrecipe.tasks import ruler

    _, tok = tiny
    cfg = TinyBaseV2Config()
    rows = RulerRows(tok, cfg)
    train_answers = set()
    for step in range(40):
        rng = np.random.default_rng([cfg.seed, step])
        made = rows.row(rng, step, 0)
        if made is not None:
            train_answers.add(tok.decode([t for t in made[1] if t != -100], skip_special_tokens=True))
    eval_answers = set()
    for task in ("niah_single_1", "niah_multikey_2", "niah_multivalue"):
        for seed in (42, 1234):
            for s in ruler.generate(task, tok, 512, 20, seed=seed):
                eval_answers.update(s["outputs"])
    assert TRAIN_SEED_BASE > 10**6 > max(42, 1234)
    assert len(train_answers) > 20
    assert not any(a in t for a in eval_answers for t in train_answers)


def test_v2_stage_runs_and_resumes_from_the_command_line(tmp_path):
    # the stage-2 recipe end to end for 2 steps (grown model saved, window 512), then a re-run resumes at step 2

    out = tmp_path / "v2"
    res = cli("tiny-base", "--init-from", "tiny", "--out", str(out), "--steps", "2", "--eval-every", "0",
              "--threads", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    conf = json.loads((out / "config.json").read_text())
    assert (conf["num_hidden_layers"], conf["max_position_embeddings"]) == (4, 512)
    meta = json.loads((out / "tiny_base.json").read_text())
    assert meta["stage2"]["steps"] == 2 and (tmp_path / "v2.stage2" / "checkpoints" / "step-00000002").is_dir()
    res = cli("tiny-base", "--init-from", "tiny", "--out", str(out), "--steps", "2", "--eval-every", "0",
              "--threads", "1")
    assert res.returncode == 0 and "resumed stage 2 at step 2" in res.stdout + res.stderr


def test_v2_widen_preserves_the_function(tiny):
    """Widening (hidden size, heads, MLP x2; head dim and RoPE kept) computes the same logits; its symmetry-breaking
    noise moves them only slightly, and the copies it makes are no longer identical."""
    import torch

    from longrecipe.recipes.tinybase.surgery import grow, widen

    model, tok = tiny
    ids = torch.tensor([tok("The pass key is 12345. Remember it. What is the pass key?")["input_ids"]])
    exact = widen(grow(model, 4, 512), 2, noise=0.0)
    noisy = widen(grow(model, 4, 512), 2, noise=1e-3, seed=3)
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        assert torch.allclose(exact(input_ids=ids).logits, ref, atol=1e-4)
        drift = (noisy(input_ids=ids).logits - ref).abs().max().item()
    assert 0 < drift < 0.05 * ref.abs().max().item()
    c = noisy.config
    assert (c.hidden_size, c.num_attention_heads, c.intermediate_size, c.head_dim) == (256, 8, 1024, 32)
    q = noisy.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q[:128], q[128:256])


def test_v2_deeper_heads_preserve_the_function_and_can_learn(tiny):
    """Heads grown 32 -> 64 wide compute the same logits (old RoPE pair j is new pair 2j, same frequency), and a
    step of training moves the new dimensions (their gradients are not zero)."""
    import torch

    from longrecipe.recipes.tinybase.surgery import deepen_heads, grow

    model, tok = tiny
    ids = torch.tensor([tok("One of the special magic numbers for red-cat is: 1234567. The sky.")["input_ids"]])
    deep = deepen_heads(grow(model, 4, 512), 64, seed=1)
    assert deep.config.head_dim == 64 and deep.model.layers[0].self_attn.q_proj.weight.shape == (256, 128)
    with torch.no_grad():
        assert torch.allclose(deep(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)
    deep(input_ids=ids, labels=ids).loss.backward()
    attn = deep.model.layers[0].self_attn  # (layer 1 is a zero-output copy: no gradient reaches its q)
    q_new = attn.q_proj.weight.grad.reshape(4, 64, 128)[:, 1:16:2]  # the odd (new) RoPE pairs of each head
    o_new = attn.o_proj.weight.grad.reshape(128, 4, 64)[:, :, 32:]  # the new value dims
    assert q_new.abs().sum() > 0 and o_new.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple"):
        deepen_heads(model, 48)


def test_v2_haystacks_are_varied_and_disjoint_from_held_out_text(tmp_path):
    """The shuffled corpus haystacks differ from one another, never include held-out text, and are rebuilt
    identically (a resumed run reads the same haystacks)."""
    from longrecipe.base import corpus
    from longrecipe.recipes.tinybase.rows import haystack_dirs

    dirs = haystack_dirs(tmp_path / "h", 4, seed=1, words=300)
    texts = [(Path(d) / "text.txt").read_text() for d in dirs]
    assert len(set(t[:200] for t in texts)) == 4 and all(len(t.split()) >= 300 for t in texts)
    held = corpus.heldout_paragraphs()
    assert not any(p in t for p in held[:50] for t in texts)
    assert haystack_dirs(tmp_path / "h", 4, seed=1, words=300) == dirs
    assert [(Path(d) / "text.txt").read_text() for d in dirs] == texts


def test_v2_binding_rows_fit_ask_present_keys_and_share_no_evaluation_answer(tiny):
    """Dense key-binding rows stay within their length, supervise only answers (each the value(s) of a key whose
    needle is in the row, in RULER's wording), and never contain an answer of the evaluation samples."""
    from longrecipe.recipes.tinybase.config import TinyBaseConfig
    from longrecipe.recipes.tinybase.rows import DocSampler
    from longrecipe.tasks import ruler

    _, tok = tiny
    sampler = DocSampler(tok, TinyBaseConfig(native_length=512), np.random.default_rng(3))
    eval_answers = {a for task in ("niah_multikey_1", "niah_multikey_3", "niah_multivalue")
                    for s in ruler.generate(task, tok, 512, 20, seed=42) for a in s["outputs"]}
    asked = 0
    for length in (192, 300, 512) * 10:
        ids, labels = sampler.binding_doc(length)
        assert len(ids) == len(labels) <= length
        text = tok.decode(ids, skip_special_tokens=True)
        answers = tok.decode([t for t, y in zip(ids, labels) if y != -100], skip_special_tokens=True)
        expected = ""
        for question in text.split("\n")[1:]:
            key = question.split(" for ", 1)[1].split(" mentioned")[0]
            values = question.rsplit(" text ", 1)[1].split(" ", 1)[1].rstrip(".").split(", ")
            assert all(f"for {key} is: {v}." in text for v in values), question
            expected += " " + ", ".join(values) + "."
            asked += 1
        assert answers == expected  # exactly the answers are supervised
        assert not any(a in text for a in eval_answers)
    assert asked > 40  # several questions per row


def test_v2_binding_batches_keep_their_length_bounds(tiny):
    """--min/--max-binding-length bound the rows of an all-binding batch (short rows: fewer keys to choose among),
    and the rows of a batch differ in length within those bounds."""
    from longrecipe.recipes.tinybase.config import TinyBaseConfig, TinyBaseV2Config
    from longrecipe.recipes.tinybase.rows import DocSampler, RulerRows, _batch_v2

    _, tok = tiny
    cfg = TinyBaseV2Config(batch_size=12, mix_ruler=0, mix_passkey=0, mix_kv=0, mix_binding=1.0,
                           min_binding_length=192, max_binding_length=256)
    sampler = DocSampler(tok, TinyBaseConfig(native_length=512), np.random.default_rng(1))
    lengths = []
    for step in range(3):
        ids, labels = _batch_v2(sampler, RulerRows(tok, cfg), cfg, step)
        lengths += (ids != tok.pad_token_id).sum(1).tolist()
        assert ids.shape[1] <= 256 and (labels != -100).any(1).all()
    assert min(lengths) < 224 < max(lengths) and max(lengths) <= 256


def test_v2_repeat_rows_supervise_every_repetition_of_one_random_sequence(tiny):
    """Induction rows (--rows repeat=...): BOS, a random sequence, then that sequence again and again to the row's
    length; the loss on every token of the repetitions and none of the first copy (it cannot be predicted)."""
    from longrecipe.recipes.tinybase.config import TinyBaseConfig
    from longrecipe.recipes.tinybase.rows import DocSampler

    _, tok = tiny
    sampler = DocSampler(tok, TinyBaseConfig(native_length=512), np.random.default_rng(5))
    spans = set()
    for length in (192, 256, 512) * 4:
        ids, labels = sampler.repeat_doc(length)
        first = labels.index(next(y for y in labels if y != -100))
        span = first - 1
        assert len(ids) == len(labels) == length and ids[0] == tok.bos_token_id and 8 <= span <= length // 3
        assert all(ids[i] == ids[i - span] for i in range(first, length))  # a repetition, token for token
        assert labels[:first] == [-100] * first and labels[first:] == ids[first:]
        spans.add(span)
    assert len(spans) > 6  # the sequence length varies


def test_v2_follow_up_questions_ask_other_needles_of_the_row(tiny):
    """With follow_ups, a NIAH row is the plain row (RULER's prompt and answer, unchanged) followed by single-key
    questions in RULER's wording about needles of its context whose value the first answer does not hold; only the
    answers and their EOS are supervised; multivalue answers follow the needles' order in the context."""
    import re

    from longrecipe.recipes.tinybase.config import TinyBaseV2Config
    from longrecipe.recipes.tinybase.rows import RulerRows

    _, tok = tiny
    eos = tok.eos_token_id
    plain, dense = RulerRows(tok, TinyBaseV2Config()), RulerRows(tok, TinyBaseV2Config(follow_ups=4))
    asked = multivalue = 0
    for step in range(80):
        a = plain.row(np.random.default_rng([5, step]), step, 0)
        b = dense.row(np.random.default_rng([5, step]), step, 0)
        if a is None:
            continue
        assert b[0][: len(a[0])] == a[0] and b[1][: len(a[1])] == a[1]
        assert len(b[0]) <= 512 + 128 + 4 * 32
        first = tok.decode([t for t in a[1] if t != -100], skip_special_tokens=True)
        context = tok.decode(a[0], skip_special_tokens=True)
        ids, labels = b[0][len(a[0]):], b[1][len(a[1]):]
        ends = [i for i, t in enumerate(ids) if t == eos]
        start = 0
        for end in ends:
            question = tok.decode(ids[start:end], skip_special_tokens=True)
            supervised = [t for t, y in zip(ids[start:end + 1], labels[start:end + 1]) if y != -100]
            m = re.fullmatch(r"\nWhat is the special magic (\w+) for (.+?) mentioned in the provided text\? "
                             r"The special magic \1 for \2 mentioned in the provided text is (\S+)\.", question)
            assert m, question
            kind, key, value = m.groups()
            assert f"magic {kind}s for {key} is: {value}." in context and value not in first
            assert context.count(f" for {key} is:") == 1
            assert tok.decode(supervised, skip_special_tokens=True) == f" {value}." and supervised[-1] == eos
            start, asked = end + 1, asked + 1
        assert start == len(ids)
    assert asked > 60
    only_mv = RulerRows(tok, TinyBaseV2Config(ruler_mix=(("niah_multivalue", 1.0),)))
    for step in range(10):
        ids, labels = only_mv.row(np.random.default_rng([5, step]), step, 0)
        context = tok.decode(ids, skip_special_tokens=True)
        values = tok.decode([t for t in labels if t != -100], skip_special_tokens=True).strip(" .").split(", ")
        positions = [context.find(f"is: {v}.") for v in values]
        assert len(values) == 4 and min(positions) >= 0 and positions == sorted(positions)
        multivalue += 1
    assert multivalue == 10


def test_v2_batches_are_the_same_for_any_number_of_workers(tiny, tmp_path):
    """The GPU recipe builds stage-2 batches in worker processes: they come back in step order and equal the
    batches one process builds (each depends on (seed, step) alone), RULER rows included."""
    import torch

    from longrecipe.recipes.tinybase.config import TinyBaseConfig, TinyBaseV2Config
    from longrecipe.recipes.tinybase.rows import DocSampler, RulerRows, batches

    _, tok = tiny
    sampler = DocSampler(tok, TinyBaseConfig(native_length=512), np.random.default_rng(1))
    seen = {}
    for workers in (0, 2):
        cfg = TinyBaseV2Config(batch_size=6, workers=workers)
        rows = RulerRows(tok, cfg)
        seen[workers] = list(batches(sampler, rows, cfg, 3, 9))
    assert [s for s, _, _ in seen[2]] == list(range(3, 9))
    for (s0, ids0, lab0), (s2, ids2, lab2) in zip(seen[0], seen[2], strict=True):
        assert s0 == s2 and torch.equal(ids0, ids2) and torch.equal(lab0, lab2)
    assert len({tuple(ids[0].tolist()) for _, ids, _ in seen[0]}) == 6  # steps differ from one another


def test_v2_minutes_budget_fits_the_schedule_and_saves(tmp_path, monkeypatch):
    """`--minutes` (the one-call GPU recipe's budget): the step count is fitted after warmup from the measured rate,
    the cosine schedule is re-laid over it (the last step's lr is the schedule's floor, lr/10, not the lr of a
    5000-step schedule), and the run ends at the fitted step, not by the budget's hard stop, with model and state
    saved. The budget reads a clock of the test's own on which every training step takes exactly 0.5 s and nothing
    else takes time, so the figures are exact on any machine, however busy:
    the rate is measured from step 3 (after warmup 2) and fitted once 20 steps are measured, at step 22, when
    11.0 s of the 24 s budget are spent: 0.9 x (24 - 11) s x 2 steps/s = 23.4 more steps, so 22 + 23 = 45."""

    from longrecipe.recipes.cli import _stage2_overrides, build_parser
    from longrecipe.recipes.tinybase import train as tinybase
    from longrecipe.train.checkpoint import load_plain

    flags = build_parser().parse_args(["tiny-base", "--init-from", "tiny", "--out", "x", "--steps", "5000", "--warmup",
                                       "2", "--minutes", "0.4", "--workers", "1", "--batch-size", "2"])
    given = _stage2_overrides(flags)  # what the command line gives stage 2
    assert {k: given[k] for k in ("minutes", "workers", "batch_size", "warmup")} == \
        {"minutes": 0.4, "workers": 1, "batch_size": 2, "warmup": 2}
    trained = [0]
    real_step = tinybase.train_step

    def counted(*args, **kwargs):
        trained[0] += 1
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tinybase, "train_step", counted)
    said: list[str] = []
    out = tmp_path / "v2"
    # batches built in this process: worker processes build the same batches (test_v2_batches_are_the_same_...)
    cfg = tinybase.TinyBaseV2Config(steps=5000, **{**given, "workers": 0})
    meta = tinybase.train_tiny_base_v2("tiny", out, cfg, eval_every=0, log=said.append, clock=lambda: 0.5 * trained[0])
    ckpt = tmp_path / "v2.stage2" / "checkpoints" / "step-00000045"
    state = json.loads((tmp_path / "v2.stage2" / "progress" / "step-00000045.json").read_text())
    assert said == ["0.4 min budget: 45 steps (2.0 training steps/s)"] and not meta["stopped_by_budget"]
    assert meta["steps_run"] == meta["fitted_steps"] == state["step"] == state["fitted_steps"] == trained[0] == 45
    assert state["seconds"] == 22.5 and (out / "model.safetensors").is_file()  # 45 x 0.5 s: within the 24 s
    lr = load_plain(ckpt / "state.pt")["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-4, rel=1e-3)  # 1e-3 x (0.1 + 0.45 (1 + cos(pi)))


def test_v2_fitted_step_count_counts_the_steps_already_taken():
    from longrecipe.recipes.tinybase.config import TinyBaseV2Config
    from longrecipe.recipes.tinybase.train import _fit_steps

    cfg = TinyBaseV2Config(steps=100_000, minutes=10)
    # 520 steps taken in 320 s at 2 steps/s: 0.9 x 280 s x 2 = 504 more
    assert _fit_steps(cfg, 520, 2.0, 320.0) == 1024
    # progress checks of 5 s every 100 steps cost 0.05 s per step: 252 s / 0.55 s = 458 more
    assert _fit_steps(cfg, 520, 2.0, 320.0, eval_every=100, eval_seconds=5.0) == 520 + 458
    assert _fit_steps(cfg, 520, 2.0, 700.0) == 520  # the budget is gone: never fewer than the steps taken
    assert _fit_steps(TinyBaseV2Config(steps=600, minutes=10), 520, 2.0, 320.0) == 600  # never above --steps


def test_v2_budget_is_refitted_only_when_the_first_fit_was_far_off():
    """A first fit measured while the machine was busy (a third of the real rate) is corrected at the next save;
    a fit within 15 % is kept (no re-laid schedule for noise)."""
    from longrecipe.recipes.tinybase.config import TinyBaseV2Config
    from longrecipe.recipes.tinybase.train import _fit_steps, _refit

    cfg = TinyBaseV2Config(steps=100_000, minutes=60)
    busy = _fit_steps(cfg, 70, 0.17, 120.0)  # fitted at step 70 while something else ran: 0.17 steps/s
    refit = _refit(cfg, busy, 500, 0.5, 1100.0)  # at step 500, the rate over all steps is 0.5/s
    assert busy < 700 < 1600 < refit == _fit_steps(cfg, 500, 0.5, 1100.0)
    assert _refit(cfg, refit, 750, 0.52, 1600.0) == refit  # 750 + 0.9 x 2000 s x 0.52 = 1686, within 15 %


def test_v2_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    """Stage 2 saves train/checkpoint.py's checkpoints (weights, optimizer, schedule) and its own progress beside
    them: a run stopped after its step-2 checkpoint and run again ends with the very weights, optimizer state and
    history of a run that was never stopped."""
    import torch
    from safetensors.torch import load_file

    from longrecipe.recipes.tinybase import train as tinybase
    from longrecipe.recipes.tinybase.config import TinyBaseV2Config
    from longrecipe.train.checkpoint import load_plain

    cfg = TinyBaseV2Config(steps=4, save_every=2, batch_size=2, warmup=2, min_ruler_length=128)
    whole = tinybase.train_tiny_base_v2("tiny", tmp_path / "whole", cfg, eval_every=0, log=lambda _: None)
    real_step, calls = tinybase.train_step, [0]

    def stops_after_two(*args, **kwargs):
        calls[0] += 1
        if calls[0] > 2:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tinybase, "train_step", stops_after_two)
    with pytest.raises(KeyboardInterrupt):
        tinybase.train_tiny_base_v2("tiny", tmp_path / "cut", cfg, eval_every=0, log=lambda _: None)
    monkeypatch.setattr(tinybase, "train_step", real_step)
    said: list[str] = []
    cut = tinybase.train_tiny_base_v2("tiny", tmp_path / "cut", cfg, eval_every=0, log=said.append)
    assert said == ["resumed stage 2 at step 2"] and cut["steps_run"] == whole["steps_run"] == 4
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpts = [tmp_path / f"{run}.stage2" / "checkpoints" / "step-00000004" / "state.pt" for run in ("whole", "cut")]
    sa, sb = (load_plain(p) for p in ckpts)
    assert sa["scheduler"] == sb["scheduler"]
    assert all(torch.equal(sa["optimizer"]["state"][i]["exp_avg_sq"], sb["optimizer"]["state"][i]["exp_avg_sq"])
               for i in sa["optimizer"]["state"])


def test_v2_learning_rate_is_the_committed_schedule():
    """The shared schedule (train/schedule.py) gives, to the last bit, the lr multipliers the committed models were
    trained with: warmup then a cosine from 1 to 0.1 (or constant), for both stages' settings."""
    import math

    from longrecipe.recipes.tinybase.train import _schedule

    def committed(warmup, steps, schedule):
        return lambda s: min(1.0, (s + 1) / warmup) * (
            1.0 if schedule == "constant" else 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps))))

    for warmup, steps, schedule in ((200, 9000, "cosine"), (100, 4000, "cosine"), (100, 4000, "constant"),
                                    (2, 45, "cosine")):
        new, old = _schedule(warmup, steps, schedule), committed(warmup, steps, schedule)
        assert all(new(s) == old(s) for s in range(steps + 20))


def test_v2_options_are_checked_by_the_config():
    """Stage-2 options are refused by the config with one line naming the flag (as the command line shows it)."""
    from longrecipe.base.config import ConfigError
    from longrecipe.recipes.tinybase.config import (
        MIN_BINDING_LENGTH,
        RULER_MIX,
        TinyBaseV2Config,
        parse_mix,
        parse_rows,
    )

    assert TinyBaseV2Config.from_overrides({"width": 2, "minutes": 3.0}) == TinyBaseV2Config(width=2, minutes=3.0)
    for bad in ({"minutes": float("inf")}, {"workers": -1}, {"batch_size": 0}, {"num_layers": 1},
                {"follow_ups": -2}):
        with pytest.raises(ConfigError, match="--minutes must be a finite number >= 0, --workers >= 0"):
            TinyBaseV2Config.check_overrides(bad)
    with pytest.raises(ConfigError, match=rf"need {MIN_BINDING_LENGTH} <= --min-binding-length <= "
                                          r"--max-binding-length <= 512; got 160 and 512"):
        TinyBaseV2Config.check_overrides({"min_binding_length": 160})
    with pytest.raises(ConfigError, match="got 300 and 256"):
        TinyBaseV2Config.check_overrides({"min_binding_length": 300, "max_binding_length": 256})
    assert dict(parse_mix("fwe=0,niah_single_1=3")) == {**RULER_MIX, "fwe": 0.0, "niah_single_1": 3.0}
    with pytest.raises(ConfigError, match="--mix: unknown task 'nope' \\(choose from niah_single_1, "):
        parse_mix("nope=1")
    with pytest.raises(ConfigError, match="--mix: 'fwe=x' is not TASK=WEIGHT"):
        parse_mix("fwe=x")
    assert parse_rows("binding=0.2,repeat=0.05") == {"mix_binding": 0.2, "mix_repeat": 0.05}
    with pytest.raises(ConfigError, match="--rows: unknown row kind 'text' \\(choose from ruler, passkey, kv, "):
        parse_rows("text=0.1")
    with pytest.raises(ConfigError, match="--rows: 'kv=' is not KIND=SHARE"):
        parse_rows("kv=")
    with pytest.raises(ConfigError, match="--rows: shares must be >= 0 and sum to at most 1"):
        parse_rows("ruler=0.9")


def test_progress_checks_score_the_suites_samples(tiny, monkeypatch):
    """passkey_accuracy / ruler_accuracy evaluate through the task contract: their prompts are the passkey and RULER
    generators' (the prompts the committed models' histories were measured on)."""
    from longrecipe.recipes.tinybase import evals
    from longrecipe.tasks import passkey, ruler

    model, tok = tiny
    seen: list[list[str]] = []
    real = evals.greedy_generate
    monkeypatch.setattr(evals, "greedy_generate",
                        lambda m, t, prompts, *a: (seen.append(prompts), real(m, t, prompts, *a))[1])
    evals.passkey_accuracy(model, tok, 256, 3, seed=1234)
    evals.ruler_accuracy(model, tok, 512, 2, None, tasks=("niah_multikey_1",))
    assert seen[0] == [s["input"] for s in passkey.generate(tok, 256, 3, seed=1234)]
    assert seen[1] == [s["input"] + s["answer_prefix"] for s in ruler.generate("niah_multikey_1", tok, 512, 2, seed=42)]
