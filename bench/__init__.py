"""Benchmarks that measure this project and its peers in the same run.

Each benchmark module exposes `run(args: list[str]) -> list[dict]`, rows as in
DESIGN §8: {"bench", "case", "system", "metric", "value", "unit"}.  The modules are
registered as entry points (group `redleaf.bench`, pyproject.toml); `redleaf bench NAME`
prints their rows as a table, `--json` as one JSON array.
"""

from __future__ import annotations

import statistics

def row(bench: str, case: str, system: str, metric: str, value: float, unit: str) -> dict:
    return {"bench": bench, "case": case, "system": system, "metric": metric,
            "value": round(float(value), 4), "unit": unit}


def summarize(bench: str, case: str, system: str, samples_s: list[float], unit: str = "us") -> list[dict]:
    """median and p99 rows from samples in seconds."""
    scale = {"us": 1e6, "ms": 1e3, "ns": 1e9, "s": 1.0}[unit]
    xs = sorted(samples_s)
    med = statistics.median(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return [row(bench, case, system, "median", med * scale, unit), row(bench, case, system, "p99", p99 * scale, unit)]
