"""The command line (longrecipe/recipes/cli.py): every subcommand's help, and, as real processes, what only a process
shows: the exit code and the one line the shell sees from the console script for each command, and that a refused
input costs no torch import. Behaviour is tested in process everywhere else (helpers.cli)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, TRAIN_CONFIG, cli, cli_process, one_line_exit_2

from longrecipe.recipes.cli import build_parser

COMMANDS = ("tiny-base", "passkey", "train", "tokenize", "export", "eval", "models", "data", "serve", "report",
            "check", "analyze", "run", "demo", "merge")


def test_help_lists_every_subcommand():
    parser_commands = build_parser()._subparsers._group_actions[0].choices  # what the parser really offers
    assert tuple(parser_commands) == COMMANDS
    res = cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and "usage: longrecipe " + name in sub.stdout


def test_a_usage_error_is_one_line():
    """argparse's own refusals (unknown command, bad choice, missing argument) follow the bad-input contract too."""
    one_line_exit_2(cli("trian"), "invalid choice: 'trian'")
    one_line_exit_2(cli("eval", "--backend", "tpu"), "argument --backend: invalid choice: 'tpu'")
    one_line_exit_2(cli("export"), "the following arguments are required: checkpoint, --out")


# One cheap refusal per command, through the console script ({tmp} is the test's folder).
CONSOLE = {
    "tiny-base": (["--out", "{tmp}/v", "--minutes", "5"], "--minutes is a stage-2 option"),
    "passkey": (["--model", "{tmp}/nope"], "no model at"),
    "train": (["--config", TRAIN_CONFIG, "out={tmp}/r", "train.methd=pose"], "did you mean 'method'"),
    "tokenize": (["{tmp}/missing.jsonl", "--model", "tiny", "--out", "{tmp}/s"], "missing.jsonl"),
    "export": (["{tmp}/nothing", "--out", "{tmp}/hf"], "{tmp}/nothing"),
    "eval": (["--model", "/no/such/model", "--out", "{tmp}/o"], "no model at /no/such/model"),
    "models": (["pull"], "models pull needs a model name"),
    "data": (["pull"], "data pull needs one or more names"),
    "serve": (["{tmp}/nope"], "no model at"),
    "report": (["{tmp}/nowhere", "--out", "{tmp}/rep"], "{tmp}/nowhere"),
    "check": (["{tmp}/nowhere", "--baseline", "{tmp}/b.json"], "no results file"),
    "analyze": (["--base", "{tmp}/nope", "--extended", "tiny", "--out", "{tmp}/a"], "no model at"),
    "run": (["--config", TRAIN_CONFIG, "out={tmp}/r", "eval.options.niah_depth=2"], "did you mean 'niah_depths'"),
    "demo": (["--quick", "--out", "{tmp}/o", "--seeds", "0"], "seeds: 0 must be >= 1"),
    "merge": (["tiny", "tiny", "--weights", "nan", "nan", "--out", "{tmp}/m"], "finite"),
}


@pytest.mark.integration
@pytest.mark.parametrize("command", COMMANDS)
def test_console_script_refuses_in_one_line_with_exit_2(tmp_path, command):
    args, says = CONSOLE[command]
    res = cli_process(command, *(a.format(tmp=tmp_path) for a in args))
    one_line_exit_2(res, says.format(tmp=tmp_path))
    assert not list(tmp_path.iterdir()), "a refusal wrote files"


@pytest.mark.integration
@pytest.mark.parametrize("args", [
    ["eval", "--model", "/no/such/model", "--out", "{tmp}/o"],
    ["eval", "--model", "tiny", "--lengths", "1024", "--out", "{tmp}/o"],
    ["eval", "--model", "tiny", "--ruler-tasks", "niah_single_9", "--out", "{tmp}/o"],
    ["data", "pull", "squad", "nope"],
    ["train", "--config", TRAIN_CONFIG, "out={tmp}/o", "train.lr=.nan"],
    ["run", "--config", TRAIN_CONFIG, "out={tmp}/o", "eval.samples=0"],
])
def test_bad_input_is_refused_before_torch_is_imported(tmp_path, args):
    """A typo costs a fraction of a second: the CLI checks the input before it imports the model code (torch and
    transformers take ~5 s to import on 2 cores)."""
    code = ("import sys\nfrom longrecipe.recipes import cli\ncode = cli.main(sys.argv[1:])\n"
            "print(code, 'torch' in sys.modules, 'transformers.modeling_utils' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, *(a.format(tmp=tmp_path) for a in args)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.split() == ["2", "False", "False"], res.stdout + res.stderr
    assert not (tmp_path / "o").exists()


def test_eval_settings_layer_env_yaml_overrides_flags(tmp_path, monkeypatch):
    """Lowest first: an option's environment default, the YAML file, key=value overrides, the flags given; a YAML
    `essay_dir: null` (the self gates' built-in haystack) holds whatever LONGRECIPE_ESSAYS_DIR says."""
    from longrecipe.evaluate.config import flat
    from longrecipe.recipes.cli import build_parser, eval_config_from_flags

    monkeypatch.setenv("LONGRECIPE_ESSAYS_DIR", str(tmp_path / "env-essays"))
    yaml = tmp_path / "e.yaml"
    yaml.write_text("model: tiny\nout: o\nsamples: 3\nessay_dir: null\n")

    def config(*argv):
        return flat(eval_config_from_flags(build_parser().parse_args(["eval", *argv])))

    assert config("--model", "tiny", "--out", "o")["essay_dir"] == str(tmp_path / "env-essays")
    got = config("--config", str(yaml))
    assert got["essay_dir"] is None and got["samples"] == 3 and got["batch_size"] == 8  # YAML over env; declared
    got = config("--config", str(yaml), "samples=4", "--essay-dir", "given")
    assert got["samples"] == 4 and got["essay_dir"] == "given"
    assert config("--config", str(yaml), "samples=4", "--samples", "5")["samples"] == 5
