"""`redleaf bench fs` and `redleaf bench recovery --driver nvme --fs`, short runs: every
system gives its rows and ratios, every read pass checked its bytes (a wrong byte fails
the run), and under the driver kills no error reached the fs's client, every block read
back as written, fsck clean. No timing is asserted on: figures belong in BENCHMARKS.md."""

from __future__ import annotations

from redleaf.bench import fs as bench_fs
from redleaf.bench import recovery


def test_bench_fs_quick_runs_every_system_and_ratio():
    rows = bench_fs.run(["--quick"])
    systems = {r["system"] for r in rows if r["metric"] == "rate"}
    expected = {"redleaf", "host-os"} | ({"redleaf-fuse", "python-fuse"} if bench_fs.fuse_available() is None else set())
    assert systems == expected
    cases = {r["case"] for r in rows if r["system"] == "redleaf"}
    assert {"seqread-1m", "seqwrite-4k", "create-4k-x200", "stat-x200", "unlink-x200"} <= cases
    ratios = {(r["case"], r["system"]) for r in rows if r["metric"] == "ratio"}
    assert ("seqread-1m", "redleaf/host-os") in ratios
    assert all(r["value"] > 0 for r in rows)


def test_recovery_under_the_fs_quick_hides_every_kill():
    rows = recovery.run(["--driver", "nvme", "--fs", "--quick"])
    get = {(r["case"], r["system"], r["metric"]): r["value"] for r in rows}
    crash = "redleaf-fs-shadow-kill1s"
    assert get[("fs-kills", crash, "count")] >= 1
    assert get[("fs-driver-restarts", crash, "count")] >= 1
    for system in ("redleaf-fs-shadow", crash):
        assert get[("fs-seqread-4k", system, "errors")] == 0
        assert get[("fs-seqwrite-4k", system, "errors")] == 0
        assert get[("fs-data-verified", system, "errors")] == 0
        assert get[("fs-data-verified", system, "count")] > 0
        assert get[("fs-fsck", system, "errors")] == 0
