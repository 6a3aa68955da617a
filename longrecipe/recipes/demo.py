"""`longrecipe demo`: the paper's study at toy scale, on the embedded tiny base model v2 (native 512 -> 4x).

Why one command: the study is only comparable when every method trains on the same data, sees the same number of
training samples and is evaluated by the same harness; one command that does all of it (and resumes where it
stopped) is what makes the comparison repeatable on a laptop CPU. Layout of `out`:

    demo_config.json              the resolved settings of this run
    data/long.jsonl               the long training documents (retrieval documents in the base's formats)
    train/<method>/               one `longrecipe train` run per method (config.yaml, train_log.jsonl, model/: its
                                  final model); LongRecipe's stages in train/longrecipe-<pct>/extension, replay and
                                  merged/ (its final model: after replay and the merge with the base)
    longrecipe/analysis/          impactful-token analysis of the base vs the PoSE-extended model
    eval/<run>/                   predictions and results.json of every evaluated model
    report/                       tables (md, tex, csv) and plots (png, svg); report/seeds/seed-K/<run>/ the
                                  results.json of every main model, report/seeds/seed-K/study/ those of the
                                  Table-3 and ratio runs with study.json (compute, which run is which): small,
                                  committed with a report, enough to rebuild it

With `--seeds N` each seed is one such study in OUT/seed-K, and OUT/report holds the tables over the seeds (mean
± std, error bars, the differences that pass the rule in reports/seeds.py); a report can be rebuilt from the
committed seed folders alone: `longrecipe report --seeds REPORT/seeds/seed-* --out REPORT`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

import longrecipe.train
from longrecipe.base import model_dirs, runlock
from longrecipe.base.config import bounded, check
from longrecipe.base.identity import changed
from longrecipe.base.io import write_json, write_text
from longrecipe.base.schema import read_jsonl
from longrecipe.evaluate.config import EvalConfig, from_section
from longrecipe.evaluate.runner import run_eval
from longrecipe.recipes.longdocs import write_corpus
from longrecipe.recipes.study import DEMO_RECORD
from longrecipe.recipes.train_eval import evaluation
from longrecipe.reports.record import ratio_label  # the one builder of the name (the compute table reads it)
from longrecipe.reports.report import build_report
from longrecipe.reports.seeds import build_seed_report
from longrecipe.reports.study import write_kept_study, write_study_tables
from longrecipe.train import analysis
from longrecipe.train.flops import forward_flops, training_flops
from longrecipe.train.merge import merge_models
from longrecipe.train.positions import BASELINES, METHODS
from longrecipe.train.recipe import load_config, run_training

# RULER as the study runs it: the tasks the base is taught and solves at its window (8 NIAH variants and fwe). vt and
# cwe are left out (a documented deviation from RULER's 13): their shortest prompts (~764 and ~1,119 tokens with the
# tiny tokenizer) do not fit the 512 window, so the base has no score to recover, it was never taught them, and at
# 4x they would cost about a fifth of the evaluation. `longrecipe eval` runs all of RULER on any model.
RULER_TASKS = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
               "niah_multikey_3", "niah_multivalue", "niah_multiquery", "fwe")


@dataclass(frozen=True)
class DemoConfig:
    """The study's settings (written to OUT/demo_config.json; a re-run with other settings is refused)."""

    out: str = "runs/demo"
    report: str | None = None  # where the report goes (default: OUT/report)
    quick: bool = False
    base: str = "tiny-v2"  # the model extended: 'tiny-v2' (window 512), 'tiny' (v1, window 256) or a directory
    target: int = bounded(0, ge=0)  # 0: 4x the base's native window
    ratio: float = 0.3  # training length of PoSE, RandPos and LongRecipe as a fraction of the target
    # share of their rows kept plain (contiguous, positions 0..n-1): data.plain_fraction
    plain_fraction: float = bounded(0.0, ge=0, le=1)
    ratios: tuple[float, ...] = ()  # token-ratio study: LongRecipe at each ratio (FLT is the 100 % point)
    stages: bool = False  # Table-3 view: general ability before replay, after replay, after merge
    steps: int = 300
    batch_size: int = 8
    lr: float = 5e-4
    rope: str = "ntk-at-target"
    replay_steps: int = 40
    replay_lr: float = 5e-5
    merge_weight: float = 0.5  # weight of the extended model; the original model gets 1 - merge_weight
    # LongRecipe's post-training (replay, then the merge) for every method; the paper gives it to LongRecipe alone
    same_post_training: bool = False
    retrieval_docs: int = 256
    analysis_windows: int = 32
    lengths: tuple[int, ...] = ()  # () : the native window x 1, 2, 4 and 8
    ruler_tasks: tuple[str, ...] = RULER_TASKS
    samples: int = bounded(20, ge=1)
    niah_depths: int = 11
    general_limit: int | None = None
    essay_dir: str | None = None
    backend: str = EvalConfig.backend  # a backend of local weights
    seed: int = bounded(0, ge=0)
    seeds: int = bounded(1, ge=1)  # seeds seed .. seed + seeds - 1, one study each (OUT/seed-K when more than one)
    # scores during each extension (train.eval): passkey at the native window and the target every N steps
    # (0: none), `curve_samples` samples each; the report's train_eval_curves figure
    curve_every: int = bounded(25, ge=0)
    curve_samples: int = bounded(10, ge=1)

    def __post_init__(self) -> None:
        check(self)  # a bad value is one line naming its field, before anything runs

    @classmethod
    def quick_config(cls, **kw: Any) -> DemoConfig:
        """A few steps and samples of everything: the whole pipeline in a few minutes (CI)."""
        small = dict(quick=True, steps=4, batch_size=4, replay_steps=2, retrieval_docs=16, analysis_windows=2,
                     lengths=(), samples=2, niah_depths=2, general_limit=8, curve_every=4, curve_samples=1)
        return cls(**{**small, **kw})

    def resolved(self, native: int) -> DemoConfig:
        """The defaults that depend on the base model filled in: target 4x its window, lengths 1x..8x (2x: quick)."""
        target = self.target or 4 * native
        lengths = self.lengths or tuple(native * k for k in ((1, 2) if self.quick else (1, 2, 4, 8)))
        return dataclasses.replace(self, target=target, lengths=lengths)

    @property
    def ratio_lengths(self) -> tuple[int, ...]:
        """The ratio study's evaluation lengths: up to the target, i.e. how much of it each ratio recovers."""
        return tuple(n for n in self.lengths if n <= self.target)

    @property
    def train_length(self) -> int:
        return max(2, round(self.ratio * self.target))


class Demo:
    """The study's steps, each skipped when its output already exists (a re-run resumes)."""

    def __init__(self, cfg: DemoConfig, log=print):
        self.base = model_dirs.resolve(cfg.base)
        self.native = model_dirs.window(self.base)
        self.cfg, self.log = cfg.resolved(self.native), log
        self.out = Path(cfg.out)
        self.configs = Path(longrecipe.train.__file__).parent / "configs"  # package data: train/configs/*.yaml
        self.compute: dict[str, dict[str, float]] = {}

    # ---------------------------------------------------------------- data
    def data(self) -> Path:
        path = self.out / "data" / "long.jsonl"
        if not path.exists():
            tok = AutoTokenizer.from_pretrained(self.base, trust_remote_code=False)
            counts = write_corpus(path, tok, self.cfg.target, self.cfg.retrieval_docs, self.cfg.seed)
            self.log(f"data: {counts['retrieval']} retrieval documents -> {path}")
        return path

    # ---------------------------------------------------------------- training
    def train(self, name: str, config: str, overrides: list[str]) -> Path:
        """One `longrecipe train` stage into train/<name>; its compute is recorded under `name`."""
        out = self.out / "train" / name
        args = [f"out={out}", *overrides]
        model = out / "model"
        if not (model / "config.json").exists():
            self.log(f"train {name}")
            run_training(str(self.configs / config), args, evaluation)
        cfg = load_config(str(self.configs / config), args)
        self.compute[name] = self._train_compute(cfg, out, model)
        return model

    def _train_compute(self, cfg: Any, out: Path, model: Path) -> dict[str, float]:
        conf = json.loads((model / "config.json").read_text())
        rows = cfg.train.steps * cfg.train.batch_size  # sequences per optimizer step, over all processes
        log = list(read_jsonl(out / "train_log.jsonl"))
        return {"sequences": rows, "seq_len": cfg.train.train_length, "tokens": rows * cfg.train.train_length,
                "flops": training_flops(conf, cfg.train.train_length, rows),
                "wall_s": float(log[-1]["elapsed_s"]) if log else 0.0}

    def _extension_overrides(self, length: int) -> list[str]:
        c = self.cfg
        return [f"data.source={self.data()}", f"train.target_length={c.target}", f"train.train_length={length}",
                f"train.steps={c.steps}", f"train.batch_size={c.batch_size}", f"train.lr={c.lr}",
                f"train.seed={c.seed}", f"rope.method={c.rope}", "train.save_every=25", f"model.path={c.base}",
                f"data.plain_fraction={c.plain_fraction}", f"train.eval.every={c.curve_every}",
                f"train.eval.samples={c.curve_samples}"]

    def method_config(self, method: str) -> str:
        """A method's training config in train/configs/, as its `Method` entry names it (`tiny_config`)."""
        name = METHODS[method].tiny_config
        if not (self.configs / name).is_file():
            raise ValueError(f"method {method!r}: no training config {self.configs / name} (Method.tiny_config in "
                             f"train/positions.py names it)")
        return name

    def baselines(self) -> dict[str, Path]:
        """FLT at the target length; PoSE and RandPos at `ratio` of it: the same number of samples each (their
        extension stage: the PoSE one is also the analysis' extended model). Every method's config is looked up
        before any is trained: a missing one stops the demo at its start."""
        c = self.cfg
        configs = {method: self.method_config(method) for method in METHODS}
        out = {}
        for method in BASELINES:
            length = c.target if METHODS[method].full_length else c.train_length
            out[method] = self.train(method, configs[method], self._extension_overrides(length))
        return out

    def post_train(self, name: str, extended: Path) -> dict[str, Path]:
        """LongRecipe's training optimizations: replay at the native length, then the merge with the original model
        (train/<name>/replay, train/<name>/merged)."""
        c = self.cfg
        rep = self.train(f"{name}/replay", "tiny_replay.yaml", [
            f"model.path={extended}", f"train.steps={c.replay_steps}", f"train.batch_size={c.batch_size}",
            f"train.lr={c.replay_lr}", f"train.seed={c.seed}", f"train.train_length={self.native}",
            f"train.target_length={self.native}"])
        merged = self.out / "train" / name / "merged"
        if not (merged / "config.json").exists():
            merge_models([str(rep), str(self.base)], [c.merge_weight, 1 - c.merge_weight], merged)
        return {"replay": rep, "merged": merged}

    def analysis(self, extended: Path) -> Path:
        """Impactful tokens: base vs an extended model of the same family (here the PoSE-extended one)."""
        out = self.out / "longrecipe" / "analysis"
        if not (out / "token_types.json").exists():
            self.log("analysis: base vs PoSE-extended model")
            t0 = time.time()
            analysis.run(self.cfg.base, str(extended), str(self.data()), out, window=self.cfg.target,
                max_windows=self.cfg.analysis_windows)
            (out / "wall_s.txt").write_text(f"{time.time() - t0:.3f}\n")
        return out / "token_types.json"

    def longrecipe(self, ratio: float, anchors: Path) -> dict[str, Path]:
        """Extension with impactful-sentence selection and jumping positions, replay, merge with the original."""
        c = self.cfg
        name = ratio_label(ratio)
        length = max(2, round(ratio * c.target))
        ext = self.train(f"{name}/extension", self.method_config("longrecipe"), [
            *self._extension_overrides(length), "data.selection=impactful", f"data.anchors_from={anchors}"])
        return {"extension": ext, **self.post_train(name, ext)}

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, name: str, model: Path | str, suites: tuple[str, ...],
                 lengths: tuple[int, ...] | None = None) -> Path:
        out = self.out / "eval" / name
        if not (out / "results.json").exists():
            c = self.cfg
            lengths = lengths or c.lengths
            self.log(f"eval {name}: {', '.join(suites)}")
            # the study's own settings of the suites; general ability at the native window
            section = {"suites": suites, "lengths": lengths, "backend": c.backend, "samples": c.samples,
                       "seed": c.seed + 42, "essay_dir": c.essay_dir, "options": {
                           "niah_depths": c.niah_depths, "ruler_tasks": c.ruler_tasks,
                           "general_max_length": self.native, "general_limit": c.general_limit}}
            ecfg = from_section(section, {"model": str(model), "out": str(out), "allow_extrapolation": True},
                                "demo", "the demo")
            run_eval(ecfg, command="longrecipe demo" + (" --quick" if c.quick else ""), log=self.log)
        return out

    # ---------------------------------------------------------------- the whole study
    def run(self) -> Path:
        c = self.cfg
        if any(abs(r - c.ratio) > 1e-9 for r in c.ratios) and not c.ratio_lengths:
            raise ValueError(f"the token-ratio study evaluates lengths up to the target ({c.target}); "
                             f"--lengths {','.join(map(str, c.lengths))} has none")
        saved = self.out / "demo_config.json"
        if saved.exists():
            diff = changed_settings(c, json.loads(saved.read_text()))
            if diff:
                raise ValueError(f"{self.out} holds a demo run with other settings ({diff[0]} differs); "
                                 f"use a new --out")
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(saved, dataclasses.asdict(c))
        t0 = time.time()
        extended = self.baselines()
        models: dict[str, Path | str] = {"base": c.base, **extended}
        if c.same_post_training:
            models.update({m: self.post_train(f"{m}-post", p)["merged"] for m, p in extended.items()})
        anchors = self.analysis(extended["pose"])
        main = self.longrecipe(c.ratio, anchors)
        models["longrecipe"] = main["merged"]
        long_suites = ("ruler", "niah", "passkey", "ppl", "general")
        runs = [self.evaluate(n, m, long_suites) for n, m in models.items()]
        stage_runs = []
        if c.stages:
            for stage in ("extension", "replay"):
                stage_runs.append(self.evaluate(f"longrecipe-{stage}", main[stage], ("passkey", "ppl", "general")))
            stage_runs.append(runs[-1])
        ratio_runs = []
        for r in c.ratios:
            if abs(r - c.ratio) < 1e-9:
                ratio_runs.append((r, runs[-1]))
                continue
            ratio_runs.append((r, self.evaluate(ratio_label(r), self.longrecipe(r, anchors)["merged"],
                                                ("ruler", "passkey", "ppl"), c.ratio_lengths)))
        self.compute["analysis"] = {"flops": self._analysis_flops(), "wall_s": self._analysis_wall()}
        write_json(self.out / "compute.json", self.compute)
        report = Path(c.report) if c.report else self.out / "report"
        self._report(runs, stage_runs, ratio_runs, report)
        self.log(f"demo finished in {(time.time() - t0) / 60:.1f} min; report in {report}")
        return report

    def _analysis_flops(self) -> float:
        conf = json.loads((self.base / "config.json").read_text())
        data = json.loads((self.out / "longrecipe" / "analysis" / "token_types.json").read_text())
        return 2 * int(data["windows"]) * forward_flops(conf, int(data["window"]))  # H and H' forward passes

    def _analysis_wall(self) -> float:
        path = self.out / "longrecipe" / "analysis" / "wall_s.txt"
        return float(path.read_text()) if path.exists() else 0.0

    def _report(self, runs: list[Path], stage_runs: list[Path], ratio_runs: list[tuple[float, Path]],
                out: Path) -> None:
        if out.exists() and self.cfg.report is None:
            shutil.rmtree(out)  # the report is derived data: rebuilt whole from the results every time
        stages = {**{m: m for m in BASELINES}, "longrecipe": f"{ratio_label(self.cfg.ratio)}/extension"}
        logs = {name: self.out / "train" / stage / "train_log.jsonl" for name, stage in stages.items()}
        curves = {name: self.out / "train" / stage / "train_eval.jsonl" for name, stage in stages.items()}
        build_report(runs, out, target=self.cfg.target, train_logs=logs,
                     train_curves={k: v for k, v in curves.items() if v.is_file()})
        write_study_tables(self.compute, self.cfg.ratio, runs, stage_runs, ratio_runs, out, DEMO_RECORD)
        folder = out / "seeds" / f"seed-{self.cfg.seed}"
        keep_seed(runs, folder)
        keep_study(folder, self.compute, self.cfg.ratio, runs, stage_runs, ratio_runs)


def changed_settings(cfg: DemoConfig, saved: dict[str, Any]) -> list[str]:
    """The settings in which `cfg` differs from a run's saved demo_config.json. Studies may be added to a finished
    run (report, ratios, stages); a setting the saved file lacks (written before the setting existed) counts as its
    default, so that such a run still resumes; one it holds that no longer exists is not compared."""
    defaults = {f.name: f.default for f in dataclasses.fields(DemoConfig)}
    known = {k: v for k, v in saved.items() if k in defaults}
    return changed(known, dataclasses.asdict(cfg), ignore=("report", "ratios", "stages"), defaults=defaults)


def keep_seed(runs: list[Path], folder: Path) -> None:
    """The results.json of every evaluated model, in folder/<run>/: what a report over seeds is rebuilt from."""
    for run in runs:
        dest = folder / run.name / "results.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_text(dest, (run / "results.json").read_text())


def keep_study(folder: Path, compute: dict, ratio: float, runs: list[Path], stage_runs: list[Path],
               ratio_runs: list[tuple[float, Path]]) -> None:
    """The per-study tables' inputs in folder/study/: the results of the stage and ratio runs that are not main
    runs, and study.json (the compute record, which run is which). Why: seeds run on other days and machines
    are joined from their kept folders alone (`longrecipe report --seeds`), Table 3 and the token-ratio table
    included."""
    main = {r.name for r in runs}
    extra = [r for r in [*stage_runs, *(p for _, p in ratio_runs)] if r.name not in main]
    keep_seed(extra, folder / "study")
    write_json(folder / "study" / "study.json", {
        "compute": compute, "ratio": ratio, "stage_runs": [r.name for r in stage_runs],
        "ratio_runs": [[r, p.name] for r, p in ratio_runs], **DEMO_RECORD.to_json()})


def run_demo(cfg: DemoConfig, log=print) -> Path:
    """One study, or with cfg.seeds > 1 one per seed (OUT/seed-K) and the report over them in OUT/report."""
    with runlock.hold(cfg.out):  # one owner per study folder
        return _run_demo(cfg, log)


def _run_demo(cfg: DemoConfig, log=print) -> Path:
    if cfg.seeds == 1:
        return Demo(cfg, log).run()
    out = Path(cfg.out)
    report = Path(cfg.report) if cfg.report else out / "report"
    folders = []
    for k in range(cfg.seed, cfg.seed + cfg.seeds):
        one = dataclasses.replace(cfg, seed=k, seeds=1, out=str(out / f"seed-{k}"), report=None)
        log(f"seed {k}")
        Demo(one, log).run()
        folders.append(out / f"seed-{k}" / "report")
    if report.exists() and cfg.report is None:
        shutil.rmtree(report)  # derived data: rebuilt whole
    for folder in folders:  # every seed's small results, then the tables over them
        shutil.copytree(folder / "seeds", report / "seeds", dirs_exist_ok=True)
    resolved = Demo(cfg, log).cfg
    seed_dirs = sorted((report / "seeds").glob("seed-*"))
    build_seed_report(seed_dirs, report, target=resolved.target)
    write_kept_study(seed_dirs, report, DEMO_RECORD)  # per-study tables: from the seeds that ran those studies
    log(f"report over {cfg.seeds} seeds in {report}")
    return report
