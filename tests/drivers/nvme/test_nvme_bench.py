"""Smoke tests of the NVMe benchmarks: they run, clean up, and report the rows
DESIGN §8 asks for.  No figure is asserted on: timings belong in BENCHMARKS.md."""

from __future__ import annotations

import glob
import os
import tempfile

from redleaf.bench import nvme, recovery_nvme

KEYS = {"bench", "case", "system", "metric", "value", "unit"}


def _leftovers() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "redleaf-bench-*")))


def test_bench_nvme_rows():
    before = _leftovers()
    rows = nvme.run(["--seconds", "0.05", "--size", "16MiB"])
    assert _leftovers() == before, "the benchmark left its image directory behind"
    assert all(set(r) == KEYS for r in rows)
    got = {(r["case"], r["system"], r["metric"]) for r in rows}
    for kind in ("randread", "seqread", "randwrite", "seqwrite"):
        peer = "direct-pwritev" if kind.endswith("write") else "direct-preadv"
        for batch in (1, 32):
            case = f"{kind}-4k-b{batch}"
            for system in ("redleaf", "redleaf-shadow", peer):
                assert {(case, system, m) for m in ("rate", "median", "p99")} <= got
            assert (case, "redleaf", "ratio") in got and (case, "redleaf-shadow", "ratio") in got
    assert all(r["value"] > 0 for r in rows if r["metric"] == "rate")


def test_bench_recovery_nvme_rows_and_plot(tmp_path):
    plot = tmp_path / "recovery.png"
    rows = recovery_nvme.run(["--seconds", "1.5", "--size", "16MiB", "--colocated", "--plot", str(plot)])
    try:
        assert plot.stat().st_size > 10_000
    finally:
        plot.unlink(missing_ok=True)
    assert all(set(r) == (KEYS | {"note"} if r["system"].startswith("published-") else KEYS) for r in rows)
    assert all(r["note"] for r in rows if r["system"].startswith("published-"))
    by = {(r["case"], r["system"], r["metric"]): r["value"] for r in rows}
    # the attached client's pair and, with --colocated, the pair whose client is a
    # domain in the shadow's group (the driver apart): every kill hidden in both
    for calm in ("redleaf-shadow", "redleaf-colocated"):
        crash = f"{calm}-kill1s"
        for phase in ("seqread-4k-b32", "seqwrite-4k-b32"):
            assert by[(phase, calm, "errors")] == 0
            assert by[(phase, crash, "errors")] == 0
            assert by[(phase, crash, "rate")] > 0
            assert (phase, crash, "ratio") in by
        assert by[("kills", crash, "count")] >= 1
        for system in (calm, crash):
            assert by[("data-verified", system, "count")] > 0
            assert by[("data-verified", system, "errors")] == 0
