"""The demo: FLOPs counted by hand, the long training documents, the study tables, and `longrecipe demo --quick`
end to end (every method trained, evaluated and present in the report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli

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


def test_long_documents(tiny):
    """Retrieval documents: episodes in the base model's row formats (passkey; RULER's needle sentence with number,
    word and uuid values, asked one key at a time, all values of one key, or several keys at once); every answer
    value is the value of the needle it names, which comes before it in the same episode; needle-to-question
    distances cover the whole target window; answers are most of the targets."""
    import re

    from longrecipe.recipes.longdocs import INTRO, retrieval_document
    from longrecipe.tasks import passkey

    _, tok = tiny
    rng = np.random.default_rng(0)
    dist, answer_chars, prose_chars, kinds, pk, multi = [], 0, 0, {}, 0, 0
    intro = INTRO.split("{")[0]  # "Some special magic "
    for _ in range(24):
        doc, spans = retrieval_document(tok, 1152, rng, target=1024)
        assert len(tok(doc, add_special_tokens=False)["input_ids"]) >= 1152
        assert doc.startswith((intro, passkey.PREFIX))
        needles = dict(re.findall(r"One of the special magic \w+ for (\S+) is: (\S+)\.", doc))
        for key, value in re.findall(r"for (\S+) mentioned in the provided text is (\S+)\.", doc):
            assert needles[key] == value
        for span in spans:
            if len(span) == 2:  # a prose target
                prose_chars += span[1] - span[0]
                continue
            a, b, n0, n1 = span
            answer, needle, between = doc[a:b], doc[n0:n1], doc[n1:a]
            # " value." with its space: after "is" a byte-level BPE model emits " " before digits, and " word" is
            # one token; without the space as a target, word answers taught "is -> a word" and numbers were lost
            assert re.fullmatch(r" [\w-]+[.,]", answer) and n1 <= a
            assert needle.endswith(f" is:{answer[:-1]}.") or needle.startswith(f"The pass key is{answer[:-1]}.")
            assert intro not in between and passkey.PREFIX not in between  # the same episode
            kind = re.match(r"One of the special magic (\w+)", needle)
            if kind:
                kinds[kind.group(1)] = kinds.get(kind.group(1), 0) + 1
            pk += needle.startswith("The pass key is")
            multi += answer.endswith(",")
            answer_chars += b - a
            dist.append(len(tok(between, add_special_tokens=False)["input_ids"]))
    assert sorted(kinds) == ["numbers", "uuids", "words"] and min(kinds.values()) > 5 and pk > 5 and multi > 5
    assert sum(kinds.values()) + pk == len(dist)
    assert answer_chars > 2 * prose_chars
    # questions come from right after their needle to as far as the whole window
    assert min(dist) < 100 and max(dist) > 850 and 150 < float(np.median(dist)) < 700


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


def test_heldout_text_is_not_in_the_training_corpus():
    from longrecipe.base import corpus

    held = corpus.heldout_paragraphs()
    train = set(corpus.paragraphs())
    assert len(held) > 100 and not (set(held) & train)
    assert not set(corpus.HELDOUT_MODULES) & set(corpus.DOC_MODULES)


def _results(folder: Path, rows: list[tuple]) -> Path:
    from longrecipe.base.schema import ModelInfo, Results, ScoreRow, run_info

    res = Results(run_info("fixture", {}), ModelInfo("tiny", None, 2048), "hf",
                  tuple(ScoreRow(*r) for r in rows))
    folder.mkdir(parents=True)
    res.save(folder / "results.json")
    return folder


def test_compute_table_by_hand():
    from longrecipe.recipes.study import compute_table

    compute = {"flt": {"sequences": 8, "seq_len": 2048, "tokens": 16384, "flops": 100.0, "wall_s": 10.0},
               "pose": {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 25.0, "wall_s": 3.0},
               "longrecipe-30pct/extension": {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 25.0,
                                              "wall_s": 3.0},
               "longrecipe-30pct/replay": {"sequences": 4, "seq_len": 256, "tokens": 1024, "flops": 4.0,
                                           "wall_s": 1.0},
               "analysis": {"flops": 1.0, "wall_s": 0.5}}
    t = compute_table(compute, 0.3)
    assert list(t.index) == ["flt", "pose", "longrecipe"]
    assert t.loc["longrecipe", "FLOPs"] == 30.0 and t.loc["longrecipe", "wall s"] == 4.5
    assert t.loc["longrecipe", "train tokens"] == 5936 and t.loc["longrecipe", "FLOPs vs FLT"] == 0.3
    assert t.loc["pose", "FLOPs vs FLT"] == 0.25 and t.loc["longrecipe", "samples"] == 8


def test_table3_and_token_ratio_tables(tmp_path):
    from longrecipe.recipes.study import table3, token_ratio_table

    def general(cloze):
        return [("general", "longrecipe_cloze", "acc", cloze, 1, None, None, 60),
                ("general", "longrecipe_heldout", "bits_per_byte", 2.0 - cloze / 100, 1, None, None, 40)]

    base = _results(tmp_path / "base", general(70.0))
    ext = _results(tmp_path / "longrecipe-extension", general(40.0))
    rep = _results(tmp_path / "longrecipe-replay", general(55.0))

    def ruler(values):
        rows = [("ruler", "average", "mean_over_tasks", v, 1, n, None, 11) for n, v in zip((256, 512, 1024), values)]
        return rows + [("passkey", "passkey", "exact_match", values[0], 1, 256, None, 20)]

    merged = _results(tmp_path / "longrecipe", general(65.0) + ruler((50.0, 30.0)))
    t3 = table3(base, [ext, rep, merged])
    assert list(t3.index) == ["original", "before replay", "after replay", "after merge"]
    assert list(t3["longrecipe_cloze (acc)"]) == [70.0, 40.0, 55.0, 65.0]
    r10 = _results(tmp_path / "longrecipe-10pct", ruler((20.0, 10.0)))
    flt = _results(tmp_path / "flt", ruler((60.0, 40.0, 5.0)))  # FLT also beyond the ratio runs' lengths
    tr = token_ratio_table([(0.3, merged), (0.1, r10)], flt)
    assert list(tr.index) == ["LongRecipe 10%", "LongRecipe 30%", "FLT 100%"]
    assert list(tr[512]) == [10.0, 30.0, 40.0] and list(tr["passkey@256"]) == [20.0, 50.0, 60.0]
    # only the lengths every row has, and the mean over them (FLT's 1024 would bias its average)
    assert 1024 not in tr.columns and list(tr["Avg"]) == [15.0, 40.0, 50.0]


def test_kept_study_rebuilds_the_per_study_tables(tmp_path):
    """A seed keeps the inputs of Table 3, the token-ratio and compute tables (demo.keep_study), so that seeds run
    on other days are joined by `longrecipe report --seeds` with those tables too (from the seed that ran the
    fullest study), identical to the study's own."""
    from longrecipe.recipes.demo import keep_seed, keep_study
    from longrecipe.recipes.study import write_study_tables

    def rows(cloze, ruler):
        return [("general", "longrecipe_cloze", "acc", cloze, 1, None, None, 60),
                ("passkey", "passkey", "exact_match", ruler, 1, 512, None, 20),
                *[("ruler", "average", "mean_over_tasks", ruler - k, 1, n, None, 9)
                  for k, n in enumerate((512, 1024))]]

    ev = tmp_path / "eval"
    runs = [_results(ev / name, rows(c, r)) for name, c, r in (("base", 70.0, 90.0), ("flt", 60.0, 80.0),
                                                                 ("longrecipe", 65.0, 70.0))]
    stages = [_results(ev / "longrecipe-extension", rows(40.0, 60.0)), runs[-1]]
    ratios = [(0.1, _results(ev / "longrecipe-10pct", rows(50.0, 30.0))), (0.3, runs[-1])]
    compute = {"flt": {"sequences": 8, "seq_len": 2048, "tokens": 16384, "flops": 100.0, "wall_s": 10.0},
               "longrecipe-30pct/extension": {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 25.0,
                                              "wall_s": 3.0}}
    direct = write_study_tables(compute, 0.3, runs, stages, ratios, tmp_path / "direct")
    plain, seed = tmp_path / "seeds" / "seed-0", tmp_path / "seeds" / "seed-1"  # the extras ran with seed 1 only
    keep_seed(runs, plain)
    keep_study(plain, compute, 0.3, runs, [], [])
    keep_seed(runs, seed)
    keep_study(seed, compute, 0.3, runs, stages, ratios)
    assert sorted(p.name for p in (seed / "study").iterdir()) == ["longrecipe-10pct", "longrecipe-extension",
                                                                 "study.json"]
    res = run_cli("report", "--seeds", str(plain), str(seed), "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    for f in direct:
        assert (tmp_path / "rep" / f.name).read_text() == f.read_text(), f.name
    assert "| LongRecipe 10% |" in (tmp_path / "rep" / "token_ratio.md").read_text()
    # a kept study naming a run that is not there: one line, exit 2
    (seed / "study" / "study.json").write_text(json.dumps({"compute": {}, "ratio": 0.3, "stage_runs": ["gone"],
                                                           "ratio_runs": []}))
    bad = run_cli("report", "--seeds", str(plain), str(seed), "--out", str(tmp_path / "rep2"))
    assert bad.returncode == 2 and "not a kept study" in bad.stderr and bad.stderr.strip().count("\n") == 0


def test_table3_over_seeds_is_mean_and_std_of_every_staged_seed(tmp_path):
    """Two seeds that both ran the Table-3 stages: Table 3 of the report over seeds is their mean ± std cell by
    cell (sample std, ddof 1), not the first seed's table; a seed without the stages does not count."""
    from longrecipe.recipes.demo import keep_seed, keep_study

    def cloze(v):
        return [("general", "longrecipe_cloze", "acc", v, 1, None, None, 60)]

    folders = []
    for seed, (orig, ext, merged) in enumerate([(70.0, 40.0, 60.0), (80.0, 50.0, 60.0), (0.0, 0.0, 0.0)]):
        ev = tmp_path / f"eval-{seed}"
        runs = [_results(ev / "base", cloze(orig)), _results(ev / "longrecipe", cloze(merged))]
        stages = [_results(ev / "longrecipe-extension", cloze(ext)), runs[-1]] if seed < 2 else []
        folder = tmp_path / "seeds" / f"seed-{seed}"
        keep_seed(runs, folder)
        keep_study(folder, {}, 0.3, runs, stages, [])
        folders.append(str(folder))
    res = run_cli("report", "--seeds", *folders, "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "rep" / "table3.md").read_text()
    # original: 70, 80 -> 75 ± 7.07; before replay: 40, 50 -> 45 ± 7.07; after merge: 60, 60 -> 60 ± 0
    assert md.startswith("Mean ± std over 2 seeds.")
    assert "| original | **75.0 ± 7.07** |" in md and "| before replay | 45.0 ± 7.07 |" in md
    assert "| after merge | 60.0 ± 0.0 |" in md
    csv = pd.read_csv(tmp_path / "rep" / "table3.csv", index_col=0)
    assert csv.loc["before replay", "longrecipe_cloze (acc) std"] == pytest.approx(50**0.5)


def test_lower_is_better_columns_bold_their_minimum():
    from longrecipe.reports.tables import to_markdown

    t = pd.DataFrame({"acc": [50.0, 60.0], "bits_per_byte": [1.25, 1.5]}, index=["a", "b"])
    md = to_markdown(t)
    assert "| a | 50.0 | **1.25** |" in md and "| b | **60.0** | 1.50 |" in md


def test_demo_quick_end_to_end(tmp_path):
    """`longrecipe demo --quick`: every method trained (LongRecipe with analysis, replay and merge), every model
    evaluated, the report holds every method in its tables and plots, and the seed's small results are kept so
    that a report over seeds can be rebuilt from them (`report --seeds`; several seeds: test_reports.py)."""
    out = tmp_path / "demo"
    res = run_cli("demo", "--quick", "--out", str(out), "--stages", "--seed", "1", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = out / "report"
    methods = ("base", "flt", "pose", "randpos", "longrecipe")
    for name in ("table1", "ruler_by_length", "compute", "table3"):
        for ext in ("md", "tex", "csv"):
            assert (rep / f"{name}.{ext}").is_file(), name
    table1 = (rep / "table1.md").read_text()
    ruler = (rep / "ruler_by_length.md").read_text()
    for m in methods:
        assert f"| {m} |" in table1 and f"| {m} |" in ruler, m
        assert (rep / f"niah_{m}.png").stat().st_size > 5_000
    compute = (rep / "compute.md").read_text()
    for m in ("flt", "pose", "randpos", "longrecipe"):
        assert f"| {m} |" in compute
    for plot in ("ruler_vs_length", "loss_curves", "table1_bars"):
        assert (rep / f"{plot}.png").stat().st_size > 5_000 and (rep / f"{plot}.svg").is_file()
    # the general suite at the native length: held-out perplexity and the short tasks, for every model
    assert "longrecipe_heldout" in table1 and "longrecipe_cloze" in table1
    assert "after merge" in (rep / "table3.md").read_text()
    # every run wrote its resolved config (target 4x the base's window); LongRecipe used the analysis' anchors
    # and the same sample count
    conf = json.loads((out / "demo_config.json").read_text())
    assert conf["quick"] is True and conf["seed"] == 1 and conf["target"] == 2048 and conf["lengths"] == [512, 1024]
    assert conf["base"] == "tiny-v2" and "vt" not in conf["ruler_tasks"]  # the study's base: the embedded v2
    import yaml

    lr = yaml.safe_load((out / "train" / "longrecipe-30pct" / "extension" / "config.yaml").read_text())
    assert lr["data"]["selection"] == "impactful" and lr["data"]["anchors_from"].endswith("token_types.json")
    flt = yaml.safe_load((out / "train" / "flt" / "config.yaml").read_text())
    assert flt["train"]["train_length"] == 2048 and lr["train"]["train_length"] == 614 and flt["train"]["seed"] == 1
    assert flt["train"]["steps"] * flt["train"]["batch_size"] == lr["train"]["steps"] * lr["train"]["batch_size"]
    merged = json.loads((out / "train" / "longrecipe-30pct" / "merged" / "config.json").read_text())
    assert merged["max_position_embeddings"] == 2048
    # the seed's results are kept; a report over seeds is rebuilt from those folders alone
    kept = rep / "seeds" / "seed-1"
    assert sorted(p.name for p in kept.iterdir()) == sorted([*methods, "study"])
    assert sorted(p.name for p in (kept / "study").iterdir()) == ["longrecipe-extension", "longrecipe-replay",
                                                                 "study.json"]
    again = run_cli("report", "--seeds", str(kept), "--out", str(tmp_path / "r"))
    assert again.returncode == 0, again.stderr
    one = (tmp_path / "r" / "passkey_by_length.md").read_text()
    assert "over 1 seed." in one and all(f"| {m} |" in one for m in methods)
    assert (tmp_path / "r" / "table3.md").read_text() == (rep / "table3.md").read_text()
    # a second run resumes: nothing is retrained or re-evaluated, the report is rebuilt identically
    before = (rep / "table1.md").read_text()
    res2 = run_cli("demo", "--quick", "--out", str(out), "--stages", "--seed", "1", timeout=600)
    assert res2.returncode == 0 and "train flt" not in res2.stdout and "eval base" not in res2.stdout
    assert (rep / "table1.md").read_text() == before


def test_same_post_training_replays_and_merges_a_baseline_and_counts_its_compute(tmp_path):
    """--same-post-training: a baseline gets LongRecipe's replay (native length, replay lr) and the merge with the
    original model: the merged weights are merge_weight x replayed + (1 - merge_weight) x base, and the compute
    table counts the replay in the baseline's FLOPs."""
    import yaml
    from safetensors.torch import load_file

    from longrecipe.base import models
    from longrecipe.recipes.demo import Demo, DemoConfig
    from longrecipe.recipes.study import compute_table

    d = Demo(DemoConfig.quick_config(out=str(tmp_path / "demo"), same_post_training=True))
    base = models.resolve("tiny-v2")
    post = d.post_train("pose-post", base)  # the base stands in for an extended model
    conf = yaml.safe_load((tmp_path / "demo" / "train" / "pose-post" / "replay" / "config.yaml").read_text())
    assert conf["train"]["stage"] == "replay" and conf["train"]["train_length"] == 512
    assert conf["train"]["steps"] == 2 and conf["train"]["lr"] == d.cfg.replay_lr
    rep, merged, orig = (load_file(str(p / "model.safetensors")) for p in (post["replay"], post["merged"], base))
    moved = [k for k in orig if not torch.equal(rep[k], orig[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(merged[k], 0.5 * rep[k] + 0.5 * orig[k], rtol=1e-5, atol=1e-6)
    d.compute["pose"] = {"sequences": 8, "seq_len": 614, "tokens": 4912, "flops": 1e12, "wall_s": 1.0}
    d.compute["flt"] = {"sequences": 8, "seq_len": 2048, "tokens": 16384, "flops": 5e12, "wall_s": 4.0}
    table = compute_table(d.compute, 0.3)
    replay = d.compute["pose-post/replay"]
    assert table.loc["pose", "FLOPs"] == 1e12 + replay["flops"] and replay["flops"] > 0
    assert table.loc["pose", "train tokens"] == 4912 + 2 * 4 * 512 and table.loc["flt", "FLOPs"] == 5e12


def test_demo_refuses_a_run_directory_with_other_settings(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo_config.json").write_text(json.dumps({"steps": 999}))
    res = run_cli("demo", "--quick", "--out", str(out))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "other settings" in res.stderr
    assert json.loads((out / "demo_config.json").read_text()) == {"steps": 999}  # untouched


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default():
    """demo_config.json written before plain_fraction / same_post_training existed: missing = default, so the run
    resumes; a different value, or another changed setting, is named."""
    import dataclasses

    from longrecipe.recipes.demo import DemoConfig, changed_settings

    cfg = DemoConfig.quick_config(seed=1).resolved(512)
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))
    old = {k: v for k, v in saved.items() if k not in ("plain_fraction", "same_post_training")}
    assert changed_settings(cfg, saved) == [] and changed_settings(cfg, old) == []
    assert changed_settings(dataclasses.replace(cfg, plain_fraction=0.25), old) == ["plain_fraction"]
    assert changed_settings(cfg, {**saved, "steps": 999, "stages": True}) == ["steps"]


def test_demo_rejects_bad_seeds_and_base(tmp_path):
    bad = ((["--seeds", "0"], "--seeds must be >= 1"), (["--base", str(tmp_path / "none")], "--base: no model"),
           (["--plain-fraction", "1.5"], "--plain-fraction must be in [0, 1]"))
    for args, message in bad:
        res = run_cli("demo", "--quick", "--out", str(tmp_path / "o"), *args)
        assert res.returncode == 2 and message in res.stderr and res.stderr.strip().count("\n") == 0
        assert not (tmp_path / "o").exists()


def test_demo_rejects_bad_ratios():
    res = run_cli("demo", "--quick", "--ratios", "0.3,1.5")
    assert res.returncode == 2 and "fractions in (0, 1]" in res.stderr


def test_demo_rejects_a_ratio_study_with_no_length_within_the_target(tmp_path):
    """The ratio runs are evaluated up to the target only; with no such length they had nothing to be scored on."""
    res = run_cli("demo", "--quick", "--ratios", "0.1", "--lengths", "4096", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "has none" in res.stderr and res.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


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
    res = run_cli("train", "--config", "train/configs/tiny_pose.yaml", f"out={tmp_path / 'o'}", f"data.source={path}",
                  "train.steps=2", "train.batch_size=2", "train.train_length=64", "train.target_length=256",
                  "train.threads=1", "train.save_every=0")
    assert res.returncode == 0, res.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "o" / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == [0.0, 0.0] and [r["tokens"] for r in log] == [0, 0]


def test_malformed_loss_spans_are_one_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "x " * 3000}) + "\n" + json.dumps({"text": "y", "loss_spans": [1, 2]}) + "\n")
    res = run_cli("train", "--config", "train/configs/tiny_pose.yaml", f"out={tmp_path / 'o'}",
                  f"data.source={path}", "train.steps=1")
    assert res.returncode == 2 and f"{path}:2: loss_spans" in res.stderr


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
