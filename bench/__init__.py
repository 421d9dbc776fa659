"""Benchmarks that measure this project and its peers in the same run.

Each benchmark module exposes `run(args: list[str]) -> list[dict]`, rows as in
DESIGN §8: {"bench", "case", "system", "metric", "value", "unit"}, plus "note" on a
`published-*` row (a figure quoted from a paper: the note names the paper and the
hardware it was measured on; its case names the batch size).  `redleaf bench NAME`
prints them as a table (with a note column when a row has one); `--json` prints the
rows as one JSON array.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys

BENCHES = {
    "lifecycle": "redleaf.bench.lifecycle",
    "heap": "redleaf.bench.heap",
    "calls": "redleaf.bench.calls",
    "nvme": "redleaf.bench.nvme",
    "ixgbe": "redleaf.bench.ixgbe",
    "recovery": "redleaf.bench.recovery",
}


def row(bench: str, case: str, system: str, metric: str, value: float, unit: str) -> dict:
    return {"bench": bench, "case": case, "system": system, "metric": metric,
            "value": round(float(value), 4), "unit": unit}


def published(bench: str, case: str, system: str, metric: str, value: float, unit: str, note: str) -> dict:
    """A figure from a paper, never measured here (DESIGN §8)."""
    if not system.startswith("published-"):
        raise ValueError(f"a quoted figure's system must be labelled published-*, not {system!r}")
    if not note:
        raise ValueError("a published figure needs a note naming its source and hardware")
    return {**row(bench, case, system, metric, value, unit), "note": note}


def summarize(bench: str, case: str, system: str, samples_s: list[float], unit: str = "us") -> list[dict]:
    """median and p99 rows from samples in seconds."""
    scale = {"us": 1e6, "ms": 1e3, "ns": 1e9, "s": 1.0}[unit]
    xs = sorted(samples_s)
    med = statistics.median(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return [row(bench, case, system, "median", med * scale, unit), row(bench, case, system, "p99", p99 * scale, unit)]


def format_table(rows: list[dict]) -> str:
    cols = ["bench", "case", "system", "metric", "value", "unit"]
    if any("note" in r for r in rows):
        cols.append("note")
    cells = [cols] + [[f"{r[c]:.4g}" if c == "value" else str(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c[i].rjust(w[i]) if i == 4 else c[i].ljust(w[i]) for i in range(len(cols))).rstrip()
                     for c in cells)


def run_cli(name: str, rest: list[str], as_json: bool = False, instance: str = "default") -> int:
    mod = BENCHES.get(name)
    if mod is None:
        print(f"redleaf: unknown benchmark {name!r}; available: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    if "--json" in rest:
        rest = [a for a in rest if a != "--json"]
        as_json = True
    try:
        m = importlib.import_module(mod)
    except ImportError as e:
        print(f"redleaf: benchmark {name!r} is not available: {e}", file=sys.stderr)
        return 2
    rows = m.run(rest)
    if as_json:
        print(json.dumps(rows))
    else:
        print(format_table(rows))
    return 0
