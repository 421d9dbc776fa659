"""Benchmarks that measure this project and its peers in the same run.

Each benchmark module exposes `run(args: list[str]) -> list[dict]`, rows as in
DESIGN §8: {"bench", "case", "system", "metric", "value", "unit"}, plus "note" on a
`published-*` row (a figure quoted from a paper: the note names the paper and the
hardware it was measured on; its case names the batch size).  The modules are
registered as entry points (group `redleaf.bench`, pyproject.toml); `redleaf bench NAME`
prints their rows as a table (with a note column when a row has one), `--json` as one
JSON array.
"""

from __future__ import annotations

import statistics

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
