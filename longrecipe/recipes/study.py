"""The demo's extra tables: training compute per method, the Table-3 view and the token-ratio study.

Why here and not in the demo: they are views of results files and of a compute record (plain numbers), so they
belong with the other tables, which never import torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from longrecipe.reports import load, tables
from longrecipe.train.positions import BASELINES

STAGE_NAMES = {"longrecipe-extension": "before replay", "longrecipe-replay": "after replay",
               "longrecipe": "after merge"}


def compute_table(compute: Mapping[str, Mapping[str, float]], ratio: float) -> pd.DataFrame:
    """Rows = methods; tokens, FLOPs (counted) and wall time of all their training, and FLOPs relative to FLT.
    LongRecipe's row adds its stages (extension, replay) and the analysis forward passes."""
    label = f"longrecipe-{round(100 * ratio)}pct"
    groups: dict[str, list[str]] = {m: [m] for m in BASELINES if m in compute}
    groups["longrecipe"] = [f"{label}/extension", f"{label}/replay", "analysis"]
    for name in compute:
        if name.startswith("longrecipe-") and name.endswith("/extension") and not name.startswith(label):
            run = name.split("/")[0]
            groups[run] = [name, f"{run}/replay", "analysis"]
    rows = {}
    for run, parts in groups.items():
        found = [compute[p] for p in parts if p in compute]
        if not found:
            continue
        ext = compute.get(parts[0], {})
        rows[run] = {"train length": ext.get("seq_len", float("nan")),
                     "samples": ext.get("sequences", float("nan")),
                     "train tokens": sum(c.get("tokens", 0) for c in found),
                     "FLOPs": sum(c.get("flops", 0.0) for c in found),
                     "wall s": sum(c.get("wall_s", 0.0) for c in found)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    if "flt" in rows:
        out["FLOPs vs FLT"] = out["FLOPs"] / rows["flt"]["FLOPs"]
    out.index.name = "method"
    return out


def table3(base: Path | None, stage_runs: Sequence[Path]) -> pd.DataFrame:
    """General ability of the original model and of LongRecipe before replay, after replay, after merge (with
    passkey and long-context perplexity, to show what each stage costs or restores at long range)."""
    runs = ([base] if base is not None else []) + list(stage_runs)
    df = load.frame(runs)
    t = tables.table1(df[df.suite.isin(["general", "passkey", "ppl"])])
    t = t.reindex([load.label(r) for r in runs])
    t.index = ["original" if r == "base" else STAGE_NAMES.get(r, r) for r in t.index]
    t.index.name = "model"
    return t


def token_ratio_table(ratio_runs: Sequence[tuple[float, Path]], flt: Path | None) -> pd.DataFrame:
    """Rows = LongRecipe at each token ratio (and FLT at 100 %); columns = RULER by length and its average."""
    pairs = [(f"LongRecipe {round(100 * r)}%", p) for r, p in sorted(ratio_runs)]
    if flt is not None:
        pairs.append(("FLT 100%", flt))
    df = load.frame([p for _, p in pairs])
    wide = tables.by_length(df, "ruler", tables.view("ruler").tables[0])  # RULER by length with its summary
    wide = wide.reindex([load.label(p) for _, p in pairs])
    wide.index = [name for name, _ in pairs]
    wide.index.name = "training tokens"
    passkey = df[df.suite == "passkey"].pivot_table(index="run", columns="context_length", values="value")
    for n in passkey.columns:
        wide[f"passkey@{int(n)}"] = [passkey[n].get(load.label(p), float("nan")) for _, p in pairs]
    ppl = df[df.suite == "ppl"].pivot_table(index="run", columns="context_length", values="value")
    if not ppl.empty:
        n = max(ppl.columns)
        wide[f"perplexity@{int(n)}"] = [ppl[n].get(load.label(p), float("nan")) for _, p in pairs]
    return wide


def write_study_tables(compute: Mapping[str, Mapping[str, float]], ratio: float, runs: Sequence[Path],
                       stage_runs: Sequence[Path], ratio_runs: Sequence[tuple[float, Path]], out: Path) -> list[Path]:
    """compute.{md,tex,csv}, and table3 / token_ratio when the demo ran those studies."""
    by_name = {load.label(r): Path(r) for r in runs}
    written = tables.write(compute_table(compute, ratio), out, "compute", "Training compute per method", bold=False)
    if stage_runs:
        written += tables.write(table3(by_name.get("base"), stage_runs), out, "table3",
                                "General ability before replay, after replay and after merge")
    if ratio_runs:
        written += tables.write(token_ratio_table(ratio_runs, by_name.get("flt")), out, "token_ratio",
                                "RULER by context length vs the share of target-length tokens trained on")
    return written
