"""The trainer, run for real through the console command: pinned losses, exact resume after kill -9,
DDP and FSDP2 on 2 CPU processes (FSDP2 killed and resumed), bad configs, merge arithmetic."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from safetensors.torch import load_file

CONFIG = str(ROOT / "train" / "configs" / "tiny_longrecipe.yaml")
SMALL = ["train.batch_size=2", "train.train_length=128", "train.target_length=512", "train.warmup=2",
         "train.threads=1", "train.lr=1e-3"]


def log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


# Losses of the first 3 steps of each method on the committed tiny model (CPU, fp32, 1 thread). Re-pinned when
# every method began drawing its rows' windows from one shared stream (train/data.py).
PINNED = {
    "longrecipe": [2.821035, 2.692078, 2.559608],
    "pose": [2.413808, 1.960196, 2.066734],
    "randpos": [3.512869, 3.421786, 3.268274],
    "flt": [1.874835, 1.862062, 1.610849],
}


@pytest.mark.parametrize("method", list(PINNED))
def test_three_step_losses_are_pinned(tmp_path, method):
    length = ["train.train_length=512"] if method == "flt" else []
    res = run_cli("train", "--config", CONFIG, f"out={tmp_path}", "train.steps=3", f"train.method={method}",
                  *SMALL, *length)
    assert res.returncode == 0, res.stderr[-2000:]
    losses = [r["loss"] for r in log(tmp_path)]
    assert len(losses) == 3
    print(method, losses)
    assert losses == pytest.approx(PINNED[method], abs=2e-4)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["max_position_embeddings"] == 512 and saved["rope_parameters"]["rope_theta"] > 10000
    assert (tmp_path / "config.yaml").read_text().count("method: " + method) == 1


def test_kill_9_then_resume_is_bit_identical(tmp_path):
    # the killed run saves in the background (train.async_save): its checkpoints hold exactly the state of their
    # step, so resuming from one gives the weights and losses of the uninterrupted (foreground-saving) run
    args = [*SMALL, "train.train_length=256", "train.steps=30", "train.save_every=3"]
    ref = tmp_path / "ref"
    assert run_cli("train", "--config", CONFIG, f"out={ref}", *args).returncode == 0
    out = tmp_path / "killed"
    args.append("train.async_save=true")
    cmd = [str(Path(sys.executable).parent / "longrecipe"), "train", "--config", CONFIG, f"out={out}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"
    res = run_cli("train", "--config", CONFIG, f"out={out}", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in log(out)] == list(range(1, 31))
    assert [r["loss"] for r in log(out)] == [r["loss"] for r in log(ref)]
    elapsed = [r["elapsed_s"] for r in log(out)]
    assert elapsed == sorted(elapsed)  # wall time continues from the checkpoint (the run's cost is not undercounted)


@pytest.mark.parametrize("mode", ["plain", "fsdp2"])
def test_background_save_holds_the_state_of_its_step(tmp_path, mode):
    # the files are written only after 20 more optimizer steps (tests/async_save_worker.py holds the writer):
    # the checkpoint still restores the weights of the step it was asked for, and is not one before it is written
    res = subprocess.run([sys.executable, str(ROOT / "tests" / "async_save_worker.py"), str(tmp_path), mode],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=TORCHRUN_ENV)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-3000:]


def _torchrun(out: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
            "longrecipe", "train", "--config", CONFIG, f"out={out}", *args]


TORCHRUN_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_match_one(tmp_path, mode):
    args = [*SMALL, "train.steps=3", "train.batch_size=4"]
    one = tmp_path / "one"
    assert run_cli("train", "--config", CONFIG, f"out={one}", *args).returncode == 0
    two = tmp_path / "two"
    res = subprocess.run(_torchrun(two, *args, f"train.distributed={mode}"), cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    l1, l2 = [r["loss"] for r in log(one)], [r["loss"] for r in log(two)]
    assert l2 == pytest.approx(l1, abs=1e-4)
    a, b = weights(one), weights(two)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    # fp32 all-reduce sums in another order; Adam amplifies that on near-zero gradients (seen: 1.1e-5).
    # A wrong reduction would move weights by ~lr = 1e-3 per step.
    assert diff < 1e-4, diff
    assert a.keys() == b.keys()  # FSDP2 gathers the full model; the tied head is saved once, as by one process


def test_batch_size_is_sequences_per_step_whatever_the_micro_batch(tmp_path):
    # train.batch_size = sequences per optimizer step; micro_batch_size only splits it into forwards (accumulation):
    # 4 rows in one forward and the same 4 rows in two forwards of 2 give the same step
    args = [*SMALL, "train.steps=3", "train.batch_size=4"]
    one, acc = tmp_path / "one", tmp_path / "acc"
    assert run_cli("train", "--config", CONFIG, f"out={one}", *args).returncode == 0
    res = run_cli("train", "--config", CONFIG, f"out={acc}", *args, "train.micro_batch_size=2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["loss"] for r in log(acc)] == pytest.approx([r["loss"] for r in log(one)], abs=1e-5)
    assert [r["tokens"] for r in log(acc)] == [r["tokens"] for r in log(one)]
    a, b = weights(one), weights(acc)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    res = run_cli("train", "--config", CONFIG, f"out={tmp_path / 'bad'}", *args, "train.micro_batch_size=3")
    assert res.returncode == 2 and "train.batch_size 4 is not a multiple of train.micro_batch_size 3 x 1" in res.stderr
    assert not (tmp_path / "bad" / "model").exists()


def test_selective_checkpointing_keeps_the_losses_and_logs_throughput(tmp_path):
    # checkpointing recomputes activations in backward: same maths, so the same losses as none (and as full)
    from longrecipe.base.config import load
    from longrecipe.train.config import RunConfig
    from longrecipe.train.recipe import apply_checkpointing, load_model

    args = [*SMALL, "train.steps=2"]
    runs = {}
    for mode in ("none", "selective", "full"):
        out = tmp_path / mode
        res = run_cli("train", "--config", CONFIG, f"out={out}", *args, f"train.checkpointing={mode}")
        assert res.returncode == 0, res.stderr[-2000:]
        runs[mode] = log(out)
    for mode in ("selective", "full"):
        assert [r["loss"] for r in runs[mode]] == pytest.approx([r["loss"] for r in runs["none"]], abs=1e-5)
    row = runs["selective"][-1]
    assert row["tokens_per_s"] > 0 and row["peak_mem_mb"] > 100 and "mfu" not in row  # MFU only on known GPUs
    cfg = load(RunConfig, CONFIG, [*args, "train.checkpointing=selective", "train.checkpoint_every=2"])
    model, _ = load_model(cfg, torch.device("cpu"))
    assert apply_checkpointing(model, cfg) == [True, False]  # the tiny model's 2 layers: every 2nd recomputed
    assert [layer.gradient_checkpointing for layer in model.model.layers] == [True, False]


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_fsdp2_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path):
    """The sharded checkpoint path: each process writes its own shard (DCP), the folder appears only once complete;
    resumed with the same 2 processes the run ends exactly where the uninterrupted one does, resumed with 1 process
    (DCP reshards on load) it ends there up to float reduction order; `longrecipe export` turns the sharded
    checkpoint into a Hugging Face directory holding exactly the checkpoint's weights."""
    args = [*SMALL, "train.batch_size=4", "train.steps=30", "train.save_every=10", "train.distributed=fsdp2"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    res = subprocess.run(_torchrun(ref, *args), cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    args.append("train.async_save=true")  # the killed run saves in the background (DCP async_save)
    proc = subprocess.Popen(_torchrun(out, *args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=TORCHRUN_ENV, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    workers = _descendants(proc.pid)  # torchrun's workers do not share its process group
    for pid in [proc.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    while any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not (out / "model").exists(), "the run finished before it could be killed"
    ckpt = sorted((out / "checkpoints").glob("step-*"))[0]
    names = {f.name for f in ckpt.iterdir()}
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "state.pt", "manifest.json"} <= names
    assert not (ckpt / "model.safetensors").exists()  # nothing gathered onto one process

    exported = tmp_path / "exported"
    res = run_cli("export", str(ckpt), "--out", str(exported))
    assert res.returncode == 0, res.stderr[-2000:]
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # torch's own reader, as a reference

    dcp_to_torch_save(str(ckpt), str(tmp_path / "ref.pt"))
    direct = torch.load(tmp_path / "ref.pt", weights_only=False)["model"]
    got = load_file(str(exported / "model.safetensors"))
    assert got and all(torch.equal(got[k], direct[f"model.{k}"]) for k in got)

    one = tmp_path / "one"
    shutil.copytree(out, one)
    res = subprocess.run(_torchrun(out, *args), cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=TORCHRUN_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = weights(ref), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in log(out)] == [r["loss"] for r in log(ref)]

    res = run_cli("train", "--config", CONFIG, f"out={one}", *args, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    c = weights(one)
    assert all(torch.allclose(a[k], c[k], rtol=1e-4, atol=1e-6) for k in a)
    assert [r["loss"] for r in log(one)] == pytest.approx([r["loss"] for r in log(ref)], rel=1e-4)


def test_crafted_sharded_checkpoint_metadata_is_refused(tmp_path):
    """DCP's `.metadata` is a pickle: ours is read through an allowlist, so a crafted one is refused, never run."""
    from longrecipe.train.checkpoint import SafeReader

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (ckpt / ".metadata").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="refused to load"):
        SafeReader(str(ckpt)).read_metadata()
    assert not marker.exists()


def test_export_of_a_single_process_checkpoint_and_bad_input(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "longrecipe"), "train", "--config", CONFIG,
                             f"out={out}", *SMALL, "train.steps=400", "train.save_every=5"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"
    res = run_cli("export", str(out), "--out", str(tmp_path / "hf"))
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = sorted((out / "checkpoints").glob("step-*"))[-1]
    tied = lambda d: {"model.embed_tokens.weight" if k == "lm_head.weight" else k: v for k, v in d.items()}  # noqa: E731
    saved = tied(load_file(str(ckpt / "model.safetensors")))  # the tied pair is stored under either name
    got = tied(load_file(str(tmp_path / "hf" / "model.safetensors")))
    assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in got)
    conf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert conf["max_position_embeddings"] == 512  # the run's RoPE target, not the base's window
    res = run_cli("export", str(out), "--out", str(tmp_path / "hf"))
    assert res.returncode == 2 and "not empty" in res.stderr
    res = run_cli("export", str(tmp_path / "nothing"), "--out", str(tmp_path / "hf2"))
    assert res.returncode == 2 and not (tmp_path / "hf2").exists()


@pytest.mark.parametrize("override,message", [
    ("train.methd=pose", "did you mean 'method'"),
    ("train.method=lora", "is not one of"),
    ("train.train_length=4096", "must be >= 2 and <= train.target_length"),
    ("model.path=/nonexistent", "no model at /nonexistent"),
    ("data.source=/nonexistent.jsonl", "no such file"),
    ("rope.method=xpos", "is not one of"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, override, message):
    res = run_cli("train", "--config", CONFIG, f"out={tmp_path}", *SMALL, override)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_malformed_data_file(tmp_path):
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    res = run_cli("train", "--config", CONFIG, f"out={tmp_path}/o", *SMALL, f"data.source={bad}")
    assert res.returncode == 2 and "d.jsonl:2: malformed JSON line" in res.stderr


def test_merge_arithmetic(tmp_path, tiny_dir):
    from longrecipe.train.merge import merge_models

    a = load_file(str(tiny_dir / "model.safetensors"))
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_dir.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import save_file

    b = {k: v * 3 + 1 for k, v in a.items()}
    save_file(b, str(other / "model.safetensors"))
    res = run_cli("merge", str(other), "tiny", "--weights", "0.25", "0.75", "--out", str(tmp_path / "m"))
    assert res.returncode == 0, res.stderr
    m = load_file(str(tmp_path / "m" / "model.safetensors"))
    for k in a:  # 0.25 * (3a + 1) + 0.75 * a = 1.5 a + 0.25
        assert torch.allclose(m[k], 1.5 * a[k] + 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="sum to"):
        merge_models([str(other), "tiny"], [0.5, 0.6], tmp_path / "x")


def test_merge_rejects_other_architectures(tmp_path, tiny_dir):
    other = tmp_path / "wide"
    other.mkdir()
    for f in tiny_dir.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    conf = json.loads((other / "config.json").read_text())
    conf["num_hidden_layers"] = 3
    (other / "config.json").write_text(json.dumps(conf))
    res = run_cli("merge", "tiny", str(other), "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and "incompatible models: num_hidden_layers differs" in res.stderr
    assert not (tmp_path / "m").exists()


def test_run_refuses_a_bad_eval_key_before_training(tmp_path):
    res = run_cli("run", "--config", CONFIG, f"out={tmp_path}", "train.steps=2", "eval.options.niah_depth=2")
    assert res.returncode == 2 and "unknown config key 'niah_depth'; did you mean 'niah_depths'" in res.stderr
    assert not (tmp_path / "model").exists()


def test_compiled_training_matches_eager(tmp_path):
    # train.compile=true compiles each decoder layer and the loss chunk: same losses within float tolerance
    res = run_cli("train", "--config", CONFIG, f"out={tmp_path}", "train.steps=3", "train.compile=true", *SMALL)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["loss"] for r in log(tmp_path)] == pytest.approx(PINNED["longrecipe"], abs=1e-3)


def test_run_trains_evaluates_and_reports(tmp_path):
    res = run_cli("run", "--config", CONFIG, f"out={tmp_path}", "train.steps=2", "train.batch_size=2",
                  "train.train_length=128", "train.target_length=512", "train.threads=1", "eval.suites=passkey,niah",
                  "eval.samples=4", "eval.options.niah_depths=2", "eval.options.batch_size=4")
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("trained", "base"):
        data = json.loads((tmp_path / "eval" / name / "results.json").read_text())
        assert {r["context_length"] for r in data["scores"] if r["suite"] == "passkey"} == {256, 512}
        assert len([r for r in data["scores"] if r["suite"] == "niah"]) == 2 * 2  # any eval key: 2 depths x 2
        saved = json.loads((tmp_path / "eval" / name / "eval_config.json").read_text())
        assert (saved["niah_depths"], saved["batch_size"]) == (2, 4)
    assert json.loads((tmp_path / "eval" / "trained" / "results.json").read_text())["model"][
        "max_position_embeddings"] == 512
    for f in ("loss_curves.png", "niah_trained.png", "niah_base.png", "scores.csv"):
        assert (tmp_path / "report" / f).is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "config.yaml").is_file()
