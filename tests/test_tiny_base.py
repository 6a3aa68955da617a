"""The committed tiny base model: loads offline as a standard HF directory and retrieves at its native length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longrecipe.base import models
from longrecipe.tasks import passkey


def test_loads_offline_with_auto_classes(tiny_dir):
    code = (
        "import os, torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"m = AutoModelForCausalLM.from_pretrained({str(tiny_dir)!r});"
        f"t = AutoTokenizer.from_pretrained({str(tiny_dir)!r});"
        "ids = t('The pass key is 12345.')['input_ids']; print(len(t), m.config.max_position_embeddings,"
        " t.convert_ids_to_tokens(ids)[0], sum(p.numel() for p in m.parameters()))"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    vocab, window, first, params = out.stdout.split()
    assert int(vocab) == 2048 and int(window) == 256 and first == "<|bos|>" and int(params) < 2_000_000
    files = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    meta = json.loads((tiny_dir / "tiny_base.json").read_text())
    assert meta["config"]["native_length"] == 256


def test_tokenizer_splits_digits(tiny):
    _, tok = tiny
    pieces = tok.convert_ids_to_tokens(tok("key 90210")["input_ids"])
    assert pieces[-5:] == ["9", "0", "2", "1", "0"]


def test_passkey_at_native_length(tiny):
    from longrecipe.base.modeling import greedy_generate

    model, tok = tiny
    samples = passkey.generate(tok, 256, 20, seed=99)
    assert all(s["length"] + passkey.TOKENS_TO_GENERATE <= 256 for s in samples)
    assert all(s["length"] + passkey.TOKENS_TO_GENERATE >= 256 * 0.9 for s in samples)
    preds = greedy_generate(model, tok, [s["input"] for s in samples], passkey.TOKENS_TO_GENERATE, batch_size=10)
    acc = np.mean([passkey.score(p, s["outputs"][0]) for p, s in zip(preds, samples)])
    assert acc >= 0.85, (acc, preds[:5])


def test_embedded_v2_loads_and_retrieves_at_512():
    """The embedded v2 (`tiny-v2`, #17 A; longrecipe/assets/tiny-v2): safetensors only, 8 layers, window
    512, and it does what RESULTS.md says (passkey 100, niah_single_1 100, niah_multikey_1 100 and niah_multivalue
    90 at 512 over 50 samples each; multivalue was 34 before the sixth attempt, multikey_1 30 before the eighth, a
    random pick among its 4 keys 25), and it has induction heads (the seventh attempt's repeated sequences formed
    them; a repeated random sequence is predicted, which the sixth's weights could not)."""
    from longrecipe.base.modeling import greedy_generate, load_model
    from longrecipe.recipes.tinybase import induction_accuracy, ruler_accuracy

    kept = models.resolve("tiny-v2")
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in kept.iterdir())
    model, tok = load_model(kept)
    assert model.config.num_hidden_layers == 8 and model.config.max_position_embeddings == 512
    samples = passkey.generate(tok, 512, 20, seed=99)
    preds = greedy_generate(model, tok, [s["input"] for s in samples], passkey.TOKENS_TO_GENERATE, batch_size=10)
    assert np.mean([passkey.score(p, s["outputs"][0]) for p, s in zip(preds, samples)]) >= 0.9, preds[:5]
    tasks = ("niah_single_1", "niah_multikey_1", "niah_multivalue")
    scores = ruler_accuracy(model, tok, 512, 10, None, seed=7, tasks=tasks)
    assert scores["niah_single_1"] >= 80 and scores["niah_multivalue"] >= 60, scores
    assert scores["niah_multikey_1"] >= 70, scores  # the seventh's weights: 10 here (30 over 50)
    assert induction_accuracy(model, tok, 40, rows=4) >= 0.5  # the sixth's weights: 0.00


def test_v2_refuses_to_grow_a_deeper_model_shallower(tmp_path):
    """Continuing the embedded 8-layer v2 without --num-layers 8 would drop half its layers: one line, exit 2,
    nothing written."""
    from conftest import run_cli

    res = run_cli("tiny-base", "--init-from", "tiny-v2", "--out", str(tmp_path / "v"), "--steps", "1")
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(err) == 1 and "--num-layers 8 or more" in err[0], res.stderr
    assert not list(tmp_path.iterdir())


def test_passkey_scoring():
    assert passkey.score(" 12345. Remember", "12345") == 1.0
    assert passkey.score(" 1234", "12345") == 0.0
    assert passkey.score("none", "12345") == 0.0
    assert passkey.score(" 123456", "12345") == 0.0


def test_v2_grow_preserves_the_function(tiny):
    import torch

    from longrecipe.recipes.tinybase import grow

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
    from longrecipe.recipes.tinybase import TRAIN_SEED_BASE, RulerRows, TinyBaseV2Config
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
    from conftest import run_cli

    out = tmp_path / "v2"
    res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(out), "--steps", "2", "--eval-every", "0",
                  "--threads", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    conf = json.loads((out / "config.json").read_text())
    assert (conf["num_hidden_layers"], conf["max_position_embeddings"]) == (4, 512)
    meta = json.loads((out / "tiny_base.json").read_text())
    assert meta["stage2"]["steps"] == 2 and json.loads((tmp_path / "v2.stage2" / "state.json").read_text())["step"] == 2
    res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(out), "--steps", "2", "--eval-every", "0",
                  "--threads", "1")
    assert res.returncode == 0 and "resumed stage 2 at step 2" in res.stdout + res.stderr


def test_v2_widen_preserves_the_function(tiny):
    """Widening (hidden size, heads, MLP x2; head dim and RoPE kept) computes the same logits; its symmetry-breaking
    noise moves them only slightly, and the copies it makes are no longer identical."""
    import torch

    from longrecipe.recipes.tinybase import grow, widen

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

    from longrecipe.recipes.tinybase import deepen_heads, grow

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
    from longrecipe.recipes.tinybase import haystack_dirs

    dirs = haystack_dirs(tmp_path / "h", 4, seed=1, words=300)
    texts = [(Path(d) / "text.txt").read_text() for d in dirs]
    assert len(set(t[:200] for t in texts)) == 4 and all(len(t.split()) >= 300 for t in texts)
    held = corpus.heldout_paragraphs()
    assert not any(p in t for p in held[:50] for t in texts)
    assert haystack_dirs(tmp_path / "h", 4, seed=1, words=300) == dirs
    assert [(Path(d) / "text.txt").read_text() for d in dirs] == texts


def test_v2_mix_flag_rejects_an_unknown_task(tmp_path):
    from conftest import run_cli

    res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(tmp_path / "v"), "--mix", "niah_bogus=2")
    assert res.returncode == 2 and "unknown task 'niah_bogus'" in res.stderr
    assert not (tmp_path / "v").exists() and not (tmp_path / "v.stage2").exists()


def test_v2_binding_rows_fit_ask_present_keys_and_share_no_evaluation_answer(tiny):
    """Dense key-binding rows stay within their length, supervise only answers (each the value(s) of a key whose
    needle is in the row, in RULER's wording), and never contain an answer of the evaluation samples."""
    from longrecipe.recipes.tinybase import DocSampler, TinyBaseConfig
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
    from longrecipe.recipes.tinybase import DocSampler, RulerRows, TinyBaseConfig, TinyBaseV2Config, _batch_v2

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
    from longrecipe.recipes.tinybase import DocSampler, TinyBaseConfig

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

    from longrecipe.recipes.tinybase import RulerRows, TinyBaseV2Config

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


def test_v2_rows_flag_is_checked(tmp_path):
    from conftest import run_cli

    res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(tmp_path / "v"), "--rows", "ruler=0.7,binding=0.5")
    assert res.returncode == 2 and "sum to at most 1" in res.stderr
    res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(tmp_path / "v"), "--rows", "bind=0.5")
    assert res.returncode == 2 and "unknown row kind 'bind'" in res.stderr
    assert not (tmp_path / "v").exists() and not (tmp_path / "v.stage2").exists()


def test_v2_batches_are_the_same_for_any_number_of_workers(tiny, tmp_path):
    """The GPU recipe builds stage-2 batches in worker processes: they come back in step order and equal the
    batches one process builds (each depends on (seed, step) alone), RULER rows included."""
    import torch

    from longrecipe.recipes.tinybase import DocSampler, RulerRows, TinyBaseConfig, TinyBaseV2Config, batches

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


def test_v2_minutes_budget_fits_the_schedule_and_saves(tmp_path):
    """`--minutes` (the one-call GPU recipe's budget): the step count is fitted after warmup from the measured rate,
    the cosine schedule is re-laid over it (the last step's lr is the schedule's floor, lr/10, not the lr of a
    5000-step schedule), and the run ends at the fitted step, not by the budget's hard stop, with model and state
    saved."""
    import torch
    from conftest import run_cli

    out = tmp_path / "v2"
    res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(out), "--steps", "5000", "--warmup", "2",
                  "--minutes", "0.4", "--workers", "1", "--batch-size", "2", "--eval-every", "0", "--threads", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    log = res.stdout + res.stderr
    meta = json.loads((out / "tiny_base.json").read_text())
    state = json.loads((tmp_path / "v2.stage2" / "state.json").read_text())
    assert "min budget: " in log and "budget spent" not in log and not meta["stopped_by_budget"]
    assert 22 <= meta["steps_run"] == meta["fitted_steps"] == state["step"] == state["fitted_steps"] < 5000
    lr = torch.load(tmp_path / "v2.stage2" / "opt.pt", weights_only=True)["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-4, rel=1e-3)  # 1e-3 x (0.1 + 0.45 (1 + cos(pi)))


def test_v2_fitted_step_count_counts_the_steps_already_taken():
    from longrecipe.recipes.tinybase import TinyBaseV2Config, _fit_steps

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
    from longrecipe.recipes.tinybase import TinyBaseV2Config, _fit_steps, _refit

    cfg = TinyBaseV2Config(steps=100_000, minutes=60)
    busy = _fit_steps(cfg, 70, 0.17, 120.0)  # fitted at step 70 while something else ran: 0.17 steps/s
    refit = _refit(cfg, busy, 500, 0.5, 1100.0)  # at step 500, the rate over all steps is 0.5/s
    assert busy < 700 < 1600 < refit == _fit_steps(cfg, 500, 0.5, 1100.0)
    assert _refit(cfg, refit, 750, 0.52, 1600.0) == refit  # 750 + 0.9 x 2000 s x 0.52 = 1686, within 15 %


def test_v2_gpu_flags_are_checked_in_one_line(tmp_path):
    import torch
    from conftest import run_cli

    cases = [(["--device", "gpu"], "expected cpu, cuda or cuda:N"), (["--batch-size", "0"], "--batch-size >= 1"),
             (["--minutes", "inf"], "finite number"), (["--workers", "-1"], "--workers >= 0"),
             (["--num-layers", "1"], "--num-layers >= 2"), (["--follow-ups", "-1"], "--follow-ups >= 0"),
             (["--max-binding-length", "100"], "got 192 and 100"), (["--min-binding-length", "128"], "192 <= "),
             (["--max-binding-length", "600"], "<= 512; got 192 and 600")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA device is visible here"))
    for flags, says in cases:
        res = run_cli("tiny-base", "--init-from", "tiny", "--out", str(tmp_path / "v"), *flags)
        err = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(err) == 1 and says in err[0], (flags, res.stderr)
    res = run_cli("tiny-base", "--out", str(tmp_path / "v"), "--minutes", "5")  # stage 1 has no budget or GPU path
    assert res.returncode == 2 and "--minutes is a stage-2 option: it needs --init-from" in res.stderr
    assert not (tmp_path / "v").exists() and not (tmp_path / "v.stage2").exists()
