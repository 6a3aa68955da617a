"""The test suite's time, before and after a change, from per-test times written by a pytest run with
`LONGRECIPE_TEST_TIMES=FILE` (tests/conftest.py: wall and CPU seconds of every test, the child processes it waited
for included).

    LONGRECIPE_TEST_TIMES=after.json make test
    python benchmarks/test_times.py --before before.json --after after.json --table benchmarks/test_times.md \
        --coverage coverage_before.json coverage_after.json

Prints the totals (wall and CPU, by tier where the file has tiers, by test folder) and their ratios after/before;
`--table` writes every test's times as Markdown tables (the committed record). `--coverage` compares two
coverage reports (`make coverage`'s coverage.json, or its summaries: {"totals", "files": {path: summary}}): the total
and each module's line coverage, before and after. CPU seconds are the figure to compare
across runs on a busy machine; wall seconds are what CI pays."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text())


def group(nodeid: str) -> str:
    """tests/train/test_recipe.py::test_x[a] -> tests/train; tests/test_train.py::... -> tests/test_train.py."""
    file = nodeid.split("::")[0]
    parts = file.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else file


def totals(times: dict[str, dict], key) -> dict[str, tuple[int, float, float]]:
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for nodeid, t in times.items():
        row = out[key(nodeid, t)]
        row[0] += 1
        row[1] += t["wall_s"]
        row[2] += t["cpu_s"]
    return {k: (int(v[0]), v[1], v[2]) for k, v in sorted(out.items())}


def summary(name: str, times: dict[str, dict]) -> list[str]:
    wall, cpu = sum(t["wall_s"] for t in times.values()), sum(t["cpu_s"] for t in times.values())
    lines = [f"{name}: {len(times)} tests, {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU"]
    if all("tier" in t for t in times.values()):
        for tier, (n, w, c) in totals(times, lambda _, t: t["tier"]).items():
            lines.append(f"  {tier:12s} {n:4d} tests {w / 60:6.1f} min wall {c / 60:6.1f} min CPU")
    for folder, (n, w, c) in totals(times, lambda nodeid, _: group(nodeid)).items():
        lines.append(f"  {folder:40s} {n:4d} tests {w:7.0f} s wall {c:7.0f} s CPU")
    return lines


def table(title: str, times: dict[str, dict]) -> list[str]:
    rows = sorted(times.items(), key=lambda kv: -kv[1]["wall_s"])
    out = [f"## {title}", "", "| test | wall s | CPU s |" + (" tier |" if rows and "tier" in rows[0][1] else ""),
           "|---|---|---|" + ("---|" if rows and "tier" in rows[0][1] else "")]
    for nodeid, t in rows:
        tier = f" {t['tier']} |" if "tier" in t else ""
        out.append(f"| `{nodeid}` | {t['wall_s']:.1f} | {t['cpu_s']:.1f} |{tier}")
    return out + [""]


def coverage_rows(before: Path, after: Path) -> list[str]:
    """Line coverage before -> after, total and per module (largest fall first)."""

    def read(path: Path) -> tuple[dict, dict[str, float]]:
        data = json.loads(path.read_text())
        files = {k: (v.get("summary", v))["percent_covered"] for k, v in data["files"].items()}
        return data["totals"], files

    (tb, b), (ta, a) = read(before), read(after)
    out = [f"Line coverage: {tb['percent_covered']:.1f} % ({tb['covered_lines']}/{tb['num_statements']}) -> "
           f"{ta['percent_covered']:.1f} % ({ta['covered_lines']}/{ta['num_statements']})", "",
           "| module | before % | after % | change |", "|---|---|---|---|"]
    for k in sorted(set(a) & set(b), key=lambda k: (a[k] - b[k], k)):
        out.append(f"| `{k}` | {b[k]:.1f} | {a[k]:.1f} | {a[k] - b[k]:+.1f} |")
    return out + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True)
    p.add_argument("--after", type=Path)
    p.add_argument("--table", type=Path, help="write every test's times here (Markdown)")
    p.add_argument("--coverage", type=Path, nargs=2, metavar=("BEFORE", "AFTER"), help="two coverage JSON reports")
    args = p.parse_args()
    before = load(args.before)
    print("\n".join(summary("before", before)))
    md = ["# The test suite's time per test", "", "Written by `python benchmarks/test_times.py` from "
          "`LONGRECIPE_TEST_TIMES` files; how they were measured: benchmarks/RESULTS.md, \"The test suite\".", ""]
    if args.after:
        after = load(args.after)
        print("\n".join(summary("after", after)))
        for what in ("wall_s", "cpu_s"):
            b, a = sum(t[what] for t in before.values()), sum(t[what] for t in after.values())
            print(f"after / before, {what[:-2]}: {a / b:.2f} ({a / 60:.1f} / {b / 60:.1f} min)")
        md += table("After", after)
    md += table("Before", before)
    if args.coverage:
        rows = coverage_rows(*args.coverage)
        print(rows[0])
        md += ["## Line coverage per module", "", *rows[2:]]
    if args.table:
        args.table.write_text("\n".join(md))


if __name__ == "__main__":
    main()
