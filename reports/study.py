"""A study's extra tables: training compute per method, the Table-3 view and the token-ratio table.

Views of results files and of a compute record (plain numbers), torch-free like the other tables; which runs are
the baselines and which one is the reference comes from the study's record (reports/record.py), not from a
default here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from longrecipe.reports import load, seeds, tables
from longrecipe.reports.record import StudyRecord, complete, derived, ratio_label, read_study, recorded
from longrecipe.tasks.views import Table

TABLE3_CAPTION = "General ability before replay, after replay and after merge"
STAGE_NAMES = {"longrecipe-extension": "before replay", "longrecipe-replay": "after replay",
               "longrecipe": "after merge"}


def compute_table(compute: Mapping[str, Mapping[str, float]], ratio: float, record: StudyRecord) -> pd.DataFrame:
    """Rows = methods; tokens, FLOPs (counted) and wall time of all their training, and FLOPs relative to the
    record's reference. LongRecipe's row adds its stages (extension, replay) and the analysis forward passes; a
    baseline's, its replay when the study gave every method LongRecipe's post-training."""
    label = ratio_label(ratio)
    groups: dict[str, list[str]] = {m: [m, f"{m}-post/replay"] for m in record.methods if m in compute}
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
    if (ref := record.reference) in rows:
        out[f"FLOPs vs {ref.upper()}"] = out["FLOPs"] / rows[ref]["FLOPs"]
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


def token_ratio_table(ratio_runs: Sequence[tuple[float, Path]], reference: Path | None) -> pd.DataFrame:
    """Rows = LongRecipe at each token ratio (and the reference, the full-length run, at 100 %); columns = RULER at
    each length every row was evaluated at (the demo evaluates the ratio runs up to the target only; the reference
    also beyond), their mean, passkey."""
    pairs = [(f"LongRecipe {round(100 * r)}%", p) for r, p in sorted(ratio_runs)]
    if reference is not None:
        pairs.append((f"{load.label(reference).upper()} 100%", reference))
    df = load.frame([p for _, p in pairs])
    wide = tables.by_length(df, "ruler", Table("", "", tasks=("average",)))  # RULER (mean over tasks) by length
    wide = wide.reindex([load.label(p) for _, p in pairs])
    wide = wide[[c for c in wide.columns if wide[c].notna().all()]]  # lengths shared by every row
    wide["Avg"] = wide.mean(axis=1)
    wide.index = [name for name, _ in pairs]
    wide.index.name = "training tokens"
    passkey = df[df.suite == "passkey"].pivot_table(index="run", columns="context_length", values="value")
    for n in passkey.columns:
        col = [passkey[n].get(load.label(p), float("nan")) for _, p in pairs]
        if not any(pd.isna(col)):
            wide[f"passkey@{int(n)}"] = col
    ppl = df[df.suite == "ppl"].pivot_table(index="run", columns="context_length", values="value")
    ppl = ppl.reindex([load.label(p) for _, p in pairs]).dropna(axis=1)
    if not ppl.empty:
        n = max(ppl.columns)
        wide[f"perplexity@{int(n)}"] = [ppl[n].get(load.label(p), float("nan")) for _, p in pairs]
    return wide


def write_study_tables(compute: Mapping[str, Mapping[str, float]], ratio: float, runs: Sequence[Path],
                       stage_runs: Sequence[Path], ratio_runs: Sequence[tuple[float, Path]], out: Path,
                       record: StudyRecord) -> list[Path]:
    """compute.{md,tex,csv}, and table3 / token_ratio when the study ran those."""
    by_name = {load.label(r): Path(r) for r in runs}
    written = _write_compute(compute, ratio, record, out)
    if stage_runs:
        written += _write_table3(by_name.get("base"), stage_runs, out)
    if ratio_runs:
        written += _write_token_ratio(ratio_runs, by_name.get(record.reference or ""), out)
    return written


def _write_compute(compute: Mapping[str, Mapping[str, float]], ratio: float, record: StudyRecord,
                   out: Path) -> list[Path]:
    return tables.write(compute_table(compute, ratio, record), out, "compute", "Training compute per method",
                        bold=False)


def _write_table3(base: Path | None, stage_runs: Sequence[Path], out: Path) -> list[Path]:
    return tables.write(table3(base, stage_runs), out, "table3", TABLE3_CAPTION)


def _write_token_ratio(ratio_runs: Sequence[tuple[float, Path]], reference: Path | None, out: Path) -> list[Path]:
    return tables.write(token_ratio_table(ratio_runs, reference), out, "token_ratio",
                        "RULER by context length vs the share of target-length tokens trained on")


def write_kept_study(seed_dirs: Sequence[Path], out: Path, fallback: StudyRecord | None = None) -> list[Path]:
    """compute / table3 / token_ratio of a report over seeds, rebuilt from the seeds' kept studies
    (`demo.keep_study`) alone: Table 3 as mean ± std over every seed that ran the stages (as the study's own table
    when one did), the token-ratio table from the first seed folder (name order) that ran it, compute from the one
    with the most ratio runs. Why per table: the extras may have run with some seeds only, not necessarily the
    first, and not both with the same ones. None kept: nothing written. `fallback`: the record of a kept study
    that holds none (reports/record.py)."""
    return write_kept_tables(read_kept_studies(seed_dirs, fallback), out)


def write_kept_tables(kept: Sequence[dict], out: Path) -> list[Path]:
    """write_kept_study's tables from kept studies already read (`read_kept_studies`)."""
    if not kept:
        return []
    fullest = max(kept, key=lambda k: len(k["ratio_runs"]))  # max keeps the first of the fullest
    written = _write_compute(fullest["compute"], fullest["ratio"], fullest["record"], out)
    staged = [k for k in kept if k["stage_runs"]]
    if len(staged) == 1:
        written += _write_table3(staged[0]["main"].get("base"), staged[0]["stage_runs"], out)
    elif staged:
        mean, std = seeds.mean_std([table3(k["main"].get("base"), k["stage_runs"]) for k in staged])
        written += seeds.write_pm(mean, std, out, "table3", TABLE3_CAPTION, len(staged))
    if ratios := next((k for k in kept if k["ratio_runs"]), None):
        written += _write_token_ratio(ratios["ratio_runs"], ratios["main"].get(ratios["record"].reference or ""), out)
    return written


def read_kept_studies(seed_dirs: Sequence[Path], fallback: StudyRecord | None = None) -> list[dict]:
    """The kept studies of these seed folders (those that have one), in name order; a broken one is a ReportError.
    `report --seeds` reads them before it writes any table, so that a broken study leaves no half report."""
    return [_kept_study(Path(d), fallback) for d in sorted(map(Path, seed_dirs))
            if (Path(d) / "study" / "study.json").is_file()]


def _kept_study(folder: Path, fallback: StudyRecord | None) -> dict:
    """One seed's kept study with its run names resolved to folders (main runs, then folder/study/<run>) and its
    record (what it recorded, else `fallback`, else derived from its main runs)."""
    study = read_study(folder)
    try:
        main = {p.parent.name: p.parent for p in folder.glob("*/results.json")}
        run = {**main, **{p.parent.name: p.parent for p in (folder / "study").glob("*/results.json")}}
        kept = {"compute": study["compute"], "ratio": float(study["ratio"]), "main": main,
                "stage_runs": [run[n] for n in study["stage_runs"]],
                "ratio_runs": [(float(r), run[n]) for r, n in study["ratio_runs"]]}
    except (ValueError, KeyError, TypeError) as err:
        raise load.ReportError(f"{folder / 'study'}: not a kept study ({type(err).__name__}: {err})") from None
    kept["record"] = complete(recorded(study), fallback, lambda: derived(load.frame(sorted(main.values()))))
    return kept
