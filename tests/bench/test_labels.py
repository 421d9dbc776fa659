"""Benchmark rows say what they compare (DESIGN §8): a published figure is labelled
published-*, names its batch size in the case and its source and hardware in a note,
and a ratio against it uses our figure at the same batch size.  No timing is
asserted on: figures belong in BENCHMARKS.md."""

from __future__ import annotations

import re

import pytest

from redleaf.bench import heap, ixgbe, nvme, published, row
from redleaf.supervisor.cli import format_rows as format_table


def test_ratios_against_published_figures_use_the_same_batch_size():
    ours = {("redleaf", "fwd-b32"): 0.28, ("redleaf", "fwd-b256"): 1.6}
    rows = ixgbe.published_rows(ours)
    ratios = {(r["case"], r["system"]): r["value"] for r in rows if r["metric"] == "ratio"}
    assert ratios == {("fwd-b32", "redleaf/published-ixy-python"): pytest.approx(0.28 / 0.14, rel=1e-3),
                      ("fwd-b256", "redleaf/published-ixy-python"): pytest.approx(1.6 / 0.16, rel=1e-3),
                      ("fwd-b32", "redleaf/published-redleaf"): pytest.approx(0.28 / 14.2, rel=1e-3)}


def test_published_rows_name_batch_size_source_and_hardware():
    rows = [r for r in ixgbe.published_rows({}) if r["system"].startswith("published-")]
    assert {(r["system"], r["case"], r["value"]) for r in rows} == {
        ("published-ixy-python", "fwd-b32", 0.14), ("published-ixy-python", "fwd-b256", 0.16),
        ("published-redleaf", "fwd-b32", 14.2)}
    for r in rows:
        assert re.fullmatch(r"fwd-b\d+", r["case"])
        assert re.search(r"\d(\.\d)? GHz", r["note"]) and ("X520" in r["note"] or "82599" in r["note"])
    # without our own rates there is nothing to divide: no ratio rows
    assert not [r for r in ixgbe.published_rows({}) if r["metric"] == "ratio"]


def test_a_published_figure_needs_its_label_and_note():
    with pytest.raises(ValueError, match="published-"):
        published("x", "c-b32", "redleaf", "rate", 1.0, "Mpps", "a paper")
    with pytest.raises(ValueError, match="note"):
        published("x", "c-b32", "published-x", "rate", 1.0, "Mpps", "")


def test_the_table_shows_notes_when_a_row_has_one():
    plain = [row("x", "c", "redleaf", "rate", 2.0, "Mpps")]
    assert "note" not in format_table(plain).splitlines()[0]
    lines = format_table(plain + [published("x", "c-b32", "published-x", "rate", 1.0, "Mpps", "a paper; a CPU")])
    assert lines.splitlines()[0].split()[-1] == "note" and lines.splitlines()[2].endswith("a paper; a CPU")


def test_the_direct_peer_times_each_request_of_a_batch(tmp_path):
    """Request j of a batch ends when its own call returns: latencies grow within a
    batch instead of every request carrying the whole batch's time."""
    import numpy as np

    image = tmp_path / "img"
    image.write_bytes(bytes(64 * nvme.BLOCK))
    n, _dt, lat = nvme._run_direct(str(image), "seqread", 8, 64, 0.05, np.random.default_rng(0))
    assert n == len(lat) and n % 8 == 0 and n >= 8
    for k in range(0, n, 8):
        b = lat[k:k + 8]
        assert b == sorted(b) and b[0] < b[-1]


def test_heap_rows_are_per_operation_percentiles_means_and_ratios():
    rows = heap.run(["--quick"])
    got = {(r["case"], r["system"], r["metric"]) for r in rows}
    for case in ("alloc-free-64B", "alloc-free-4KiB"):
        for system, c in (("redleaf", case), ("inprocess", case), ("inprocess", case + "-numpy")):
            assert {(c, system, m) for m in ("median", "p99", "mean")} <= got
        assert (case, "redleaf/inprocess", "ratio") in got
    assert ("alloc-free-64B-2proc", "redleaf/inprocess", "ratio") in got
