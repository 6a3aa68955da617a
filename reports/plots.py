"""Plots (PNG and SVG) from the suites' declared views: depth x length heatmaps, score vs length; training-loss
curves, scores during training (train.eval) and the Table-1 bar chart."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from longrecipe.reports import load, tables  # noqa: E402

# the original Needle-in-a-Haystack visualisation's colours: red (0) -> yellow -> green (100)
NIAH_CMAP = LinearSegmentedColormap.from_list("niah", ["#F0496E", "#EBB839", "#0CD79F"])


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def heatmap(df: pd.DataFrame, suite: str, run: str, title: str, out: Path) -> list[Path]:
    grid = tables.depth_grid(df, suite, run)
    if grid.empty:
        return []
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * grid.shape[1] + 3), max(3.5, 0.3 * grid.shape[0] + 1.5)))
    im = ax.imshow(grid.values, cmap=NIAH_CMAP, vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(int(c)) for c in grid.columns], rotation=45)
    ax.set_yticks(range(grid.shape[0]), [f"{d:g}" for d in grid.index])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth (%)")
    ax.set_title(f"{title}: {run}")
    fig.colorbar(im, ax=ax, label="score")
    return _save(fig, out, f"{suite}_{run}")


def suite_plots(df: pd.DataFrame, windows: dict[str, int | None], out: Path, target: int | None = None) -> list[Path]:
    """Every suite's heatmaps (per run) and score-vs-length plots, in registry order."""
    written: list[Path] = []
    for suite in tables.suites(df):
        v = tables.view(suite)
        if v.heatmap:
            for run in sorted(df[df.suite == suite].run.unique()):
                written += heatmap(df, suite, run, v.heatmap, out)
    for suite in tables.suites(df):
        for spec in tables.view(suite).plots:
            r = df[(df.suite == suite) & df.context_length.notna()]
            r = r[r.task.isin(spec.tasks)] if spec.tasks else r
            written += _vs_length(r, spec.ylabel, windows, out, target, spec.name, spec.log_y)
    return written


def _vs_length(r: pd.DataFrame, ylabel: str, windows: dict[str, int | None], out: Path, target: int | None,
               name: str, log_y: bool = False) -> list[Path]:
    """One line per run over context length (log2 x axis); dotted: model windows, dashed: the target. Rows of
    several seeds (a `seed` column): the mean of the seeds' means, with their std as error bars."""
    if r.empty:
        return []
    keys = ["run", "context_length"] + (["seed"] if "seed" in r.columns else [])
    r = r.groupby(keys, as_index=False)["value"].mean()
    if "seed" in r.columns:
        r = r.groupby(["run", "context_length"], as_index=False)["value"].agg(value="mean", std="std")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for run, g in r.groupby("run"):
        g = g.sort_values("context_length")
        if "std" in g and g["std"].notna().any():
            ax.errorbar(g.context_length, g.value, yerr=g["std"].fillna(0), marker="o", capsize=3, label=run)
        else:
            ax.plot(g.context_length, g.value, marker="o", label=run)
    ax.set_xscale("log", base=2)
    lengths = sorted(r.context_length.unique())
    ax.set_xticks(lengths, [str(int(n)) for n in lengths])
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, 105)
    top = ax.get_ylim()[1]
    for w in sorted({w for w in windows.values() if w and w != target}):
        ax.axvline(w, color="grey", ls=":", lw=1)
        ax.text(w, top, f"window {w}", fontsize=7, ha="center", va="bottom", color="grey")
    if target:
        ax.axvline(target, color="black", ls="--", lw=1)
        ax.text(target, top, f"target {target}", fontsize=7, ha="center", va="bottom")
    ax.set_xlabel("context length (tokens, log2)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out, name)


EMA_SPAN = 10  # steps: alpha = 2 / (span + 1), the usual span convention


def ema(values: Sequence[float], alpha: float = 2 / (EMA_SPAN + 1)) -> list[float]:
    """Exponential moving average, s_0 = x_0, s_t = alpha x_t + (1 - alpha) s_(t-1). Why: an answer-only loss on a
    few rows swings between 0 and 7 from one step to the next; raw, the curves of several runs cannot be read."""
    out: list[float] = []
    for x in values:
        out.append(x if not out else alpha * x + (1 - alpha) * out[-1])
    return out


def loss_curves(logs: dict[str, Path], out: Path) -> list[Path]:
    """Training loss against steps and against training tokens: each run's raw losses faint, their EMA (span
    EMA_SPAN steps) solid in the same colour."""
    if not logs:
        return []
    fig, (by_step, by_tokens) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, (name, path) in enumerate(sorted(logs.items())):
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        steps, loss = [r["step"] for r in rows], [r["loss"] for r in rows]
        seen = list(itertools.accumulate(r.get("tokens", 0) for r in rows))
        colour = f"C{k % 10}"
        for ax, x in ((by_step, steps), (by_tokens, seen)):
            ax.plot(x, loss, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(x, ema(loss), color=colour, label=name)
    by_step.set_xlabel("step")
    by_tokens.set_xlabel("training tokens (loss targets)")
    by_step.set_ylabel(f"training loss (faint: raw; solid: EMA over {EMA_SPAN} steps)")
    by_step.legend(fontsize=8)
    for ax in (by_step, by_tokens):
        ax.grid(alpha=0.3)
    return _save(fig, out, "loss_curves")


def table1_bars(t1: pd.DataFrame, out: Path) -> list[Path]:
    t1 = t1[[c for c in t1.columns if not tables.lower_is_better(c)]]  # scores only (0-100), no perplexities
    if t1.empty:
        return []
    ax = t1.T.plot.bar(figsize=(max(6, 1.3 * t1.shape[1] + 3), 4), rot=0)
    ax.set_ylabel("score")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, title="run")
    ax.grid(alpha=0.3, axis="y")
    return _save(ax.figure, out, "table1_bars")


def score_curves(curves: dict[str, Path], out: Path) -> list[Path]:
    """Scores during training (train.eval) against training tokens (train_eval_curves) and against training FLOPs
    (train_eval_flops: how soon each method reaches the target for the compute it spends; FLT's full-length rows
    cost more per token): one panel per suite, task and length, one line per run."""
    frames = [pd.DataFrame(load.read_curve(path)).assign(run=name) for name, path in sorted(curves.items())]
    if not frames:
        return []
    df = pd.concat(frames, ignore_index=True)
    keys = ["run", "suite", "task", "context_length", "step", "tokens", "flops"]
    df = df.groupby(keys, as_index=False)["value"].mean()  # NIAH: the mean over depths
    return (_curve_panels(df, "tokens", "training tokens", out, "train_eval_curves")
            + _curve_panels(df, "flops", "training FLOPs", out, "train_eval_flops"))


def _curve_panels(df: pd.DataFrame, x: str, label: str, out: Path, name: str) -> list[Path]:
    panels = sorted(df.groupby(["suite", "task", "context_length"]).groups)
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (suite, task, length) in zip(axes.flat, panels):
        for k, run in enumerate(sorted(df.run.unique())):
            d = df[(df.run == run) & (df.suite == suite) & (df.task == task) & (df.context_length == length)]
            ax.plot(d[x], d.value, marker="o", markersize=3, color=f"C{k % 10}", label=run)
        ax.set_title(f"{task} @ {int(length)}" if suite == task else f"{suite} {task} @ {int(length)}", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("score during training")
    axes.flat[0].legend(fontsize=7)
    return _save(fig, out, name)


def train_curves(runs: Sequence[str | Path]) -> dict[str, Path]:
    """train_eval.jsonl files found in or beside the run folders (as `train_logs`)."""
    return _beside(runs, load.CURVE)


def train_logs(runs: Sequence[str | Path]) -> dict[str, Path]:
    """train_log.jsonl files found in or beside the run folders (a train run holds eval runs, or vice versa), each
    under the name of the folder that holds it."""
    return _beside(runs, "train_log.jsonl")


def _beside(runs: Sequence[str | Path], name: str) -> dict[str, Path]:
    found = {}
    for run in runs:
        p = Path(run)
        for cand in (p / name, p.parent / name, p.parent.parent / name):
            if cand.is_file():  # named by the run that wrote it (eval/trained and eval/base share one run)
                name = cand.parent.name
                if found.get(name, cand) != cand:  # two runs of one name (a/extension, b/extension)
                    name = f"{cand.parent.parent.name}/{name}"
                found[name] = cand
                break
    return found
