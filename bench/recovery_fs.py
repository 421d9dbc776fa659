"""`redleaf bench recovery --driver nvme --fs`: RedLeaf's recovery experiment (§5.4) on
Rv6's file system.

A client reads one file sequentially in 4 KiB calls for N seconds, then overwrites it
sequentially in 4 KiB calls for N seconds, through `FileSystem` (the rv6fs domain) on the
NVMe driver behind its shadow. In one run the block driver is killed with SIGKILL once a
second; the other is the same without crashes. As in the NVMe experiment
(bench/recovery_nvme.py), both instances are up together and take turns in slices of
about a second, and throughput is per second of a run's own active time.

The file (`--file-mb`) is many times the fs's block cache (`cache_mb`), so the reads go
down to the driver, which is what the kills hit; each write is a transaction (log write,
commit, install), so it reaches the driver too. Every block read is checked against what
the file holds; after the write phase every block the client saw written is read back
through the fs and checked, and once the instances are down both images are fsck'd.

Rows: throughput of both runs and their ratio (RedLeaf reports 95% for reads and 84%
for writes, `published-redleaf`), client-visible errors (the shadow must hide every kill:
0), blocks verified, fsck problems (0), kills, and the time from a kill to the end of the
outage it caused. `--plot FILE.png` draws throughput over time with the kills marked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import threading
import time

import numpy as np

from redleaf.bench import published, row
from redleaf.bench.fs import FS_DOMAIN
from redleaf.bench.recovery_nvme import PUBLISHED, _first_completion_delays, _plot

B = "recovery"
BLOCK = 4096
CRASH = "redleaf-fs-shadow-kill1s"
CALM = "redleaf-fs-shadow"
PUBLISHED_NOTE = ("RedLeaf OSDI'20 §6 NVMe shadow recovery, 4 KiB sequential I/O at batch 32 on the block "
                  "device, driver killed once a second; real NVMe SSD on the paper's testbed. Issue #15 takes "
                  "it as the target for file I/O on Rv6's fs")


def _block_data(fb: int, gen: int) -> np.ndarray:
    """File block fb as generation gen writes it: 512 copies of one 64-bit word."""
    return np.full(BLOCK // 8, fb | gen << 40, np.uint64).view(np.uint8)


class FsRun:
    """One instance (NVMe device + shadowed driver + rv6fs) and its client's state."""

    def __init__(self, stack, tmp: str, name: str, size: str, file_blocks: int, cache_mb: int):
        from redleaf.drivers.nvme.manifests import nvme_manifest
        from redleaf.rv6.fs_interface import FileSystem
        from redleaf.supervisor.instance import Instance

        self.name = name
        self.image = os.path.join(tmp, f"{name}.img")
        manifest = nvme_manifest(self.image, size, shadow=True, heap="128MiB", max_restarts=10_000,
                                 backoff_s=0.0) + FS_DOMAIN.format(cache_mb=cache_mb)
        self.inst = stack.enter_context(Instance(manifest, cwd=tmp))
        c = stack.enter_context(self.inst.attach())
        self.fs = c.lookup("rv6fs", FileSystem)
        self.heap = c.heap
        self.vec = c.heap.alloc_vec(np.uint8, BLOCK)
        self.nfb = file_blocks
        self.gen = {}                                     # file block -> generation last written
        self.log = {"seqread": [], "seqwrite": []}
        self.kills: list[float] = []
        self.slices: list[tuple[float, float]] = []
        self.st = {p: {"next": 0, "done": 0, "active": 0.0, "errors": 0, "verified": 0, "bad": 0}
                   for p in ("seqread", "seqwrite")}
        self.fd = self.fs.open("/data", os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
        for fb in range(file_blocks):                     # the file, written and fsync'd before the run
            self.vec.np[:] = _block_data(fb, 0)
            self.fs.pwrite(self.fd, self.vec, BLOCK, fb * BLOCK)
            self.gen[fb] = 0
        self.fs.fsync(self.fd)

    def slice(self, phase: str, seconds: float) -> None:
        """Sequential 4 KiB calls for `seconds`, continuing where the last slice stopped;
        log[phase] gets the time of every completed call."""
        from redleaf.domains.errors import RpcError
        from redleaf.rv6.fs.errors import FsError

        st, log, fs, fd = self.st[phase], self.log[phase], self.fs, self.fd
        clock = time.monotonic
        t0 = clock()
        t_end = t0 + seconds
        nxt = st["next"]
        while clock() < t_end:
            fb = nxt % self.nfb
            try:
                if phase == "seqread":
                    n, self.vec = fs.pread(fd, self.vec, BLOCK, fb * BLOCK)
                    ok = n == BLOCK and np.array_equal(self.vec.np, _block_data(fb, self.gen[fb]))
                    st["verified" if ok else "bad"] += 1
                else:
                    gen = nxt // self.nfb + 1
                    self.vec.np[:] = _block_data(fb, gen)
                    if fs.pwrite(fd, self.vec, BLOCK, fb * BLOCK) != BLOCK:
                        raise AssertionError("a short write")
                    self.gen[fb] = gen
            except (RpcError, FsError) as e:
                st["errors"] += 1
                st.setdefault("first_error", repr(e))
                if not self.vec.alive:                       # a failed read gave the moved vector up
                    self.vec = self.heap.alloc_vec(np.uint8, BLOCK)
                nxt += 1
                continue
            log.append((clock(), 1))
            nxt += 1
            st["done"] += 1
        t1 = clock()
        st["next"] = nxt
        st["active"] += t1 - t0
        self.slices.append((t0, t1))

    def verify_file(self) -> tuple[int, int]:
        """Read every block back through the fs: (blocks as last written, blocks not)."""
        good = bad = 0
        for fb in range(self.nfb):
            n, self.vec = self.fs.pread(self.fd, self.vec, BLOCK, fb * BLOCK)
            if n == BLOCK and np.array_equal(self.vec.np, _block_data(fb, self.gen[fb])):
                good += 1
            else:
                bad += 1
        return good, bad


def _run_pair(tmp: str, size: str, file_blocks: int, cache_mb: int, seconds: float) -> dict[str, dict]:
    from redleaf.rv6.fs.fsck import fsck

    n_slices = max(1, round(seconds))
    slice_s = seconds / n_slices
    out: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        runs = {name: FsRun(stack, tmp, name, size, file_blocks, cache_mb) for name in (CALM, CRASH)}
        crash = runs[CRASH]

        def kill() -> None:
            try:
                crash.inst.request("kill", name="nvme0.driver", how="sigkill")
                crash.kills.append(time.monotonic())
            except Exception:
                pass  # still restarting from the previous kill

        for phase in ("seqread", "seqwrite"):
            for i in range(n_slices):
                for name in ((CALM, CRASH) if i % 2 == 0 else (CRASH, CALM)):
                    timer = threading.Timer(slice_s / 2, kill) if name == CRASH else None
                    if timer:
                        timer.start()
                    runs[name].slice(phase, slice_s)
                    if timer:
                        timer.join()
        for name, r in runs.items():
            r.fs.fsync(r.fd)
            good, bad = r.verify_file()
            r.fs.close(r.fd)
            restarts = r.inst.status()["nvme0.driver"]["restarts"]
            out[name] = {"st": r.st, "log": r.log, "kills": r.kills, "slices": r.slices, "good": good,
                         "bad": bad, "image": r.image, "driver_restarts": restarts}
    for res in out.values():                                 # instances down: the images are still
        res["fsck"] = [str(p) for p in fsck(res["image"]) if p.severity == "error"]
    return out


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench recovery --driver nvme --fs")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase (reads, writes)")
    ap.add_argument("--quick", action="store_true", help="3-second phases, a smaller file")
    ap.add_argument("--file-mb", type=int, default=32, help="the file the client reads and writes")
    ap.add_argument("--cache-mb", type=int, default=2, help="rv6fs's block cache (much smaller than the file)")
    ap.add_argument("--plot", metavar="FILE.png", help="plot throughput over time with the kills marked")
    a = ap.parse_args(argv)
    seconds = 3.0 if a.quick else a.seconds
    file_mb = 8 if a.quick else a.file_mb
    if file_mb < 2 * a.cache_mb:
        raise SystemExit(f"--file-mb {file_mb} must be at least twice --cache-mb {a.cache_mb}: "
                         "reads that hit the cache never reach the driver being killed")
    file_blocks = file_mb * (1 << 20) // BLOCK
    size = f"{2 * file_mb + 32}MiB"
    tmp = tempfile.mkdtemp(prefix="redleaf-bench-recovery-fs-")
    try:
        res = _run_pair(tmp, size, file_blocks, a.cache_mb, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    calm, crash = res[CALM], res[CRASH]

    rows: list[dict] = []
    for phase in ("seqread", "seqwrite"):
        case = f"fs-{phase}-4k"
        rate = {n: r["st"][phase]["done"] / r["st"][phase]["active"] for n, r in res.items()}
        rows.append(row(B, case, CALM, "rate", rate[CALM], "ops/s"))
        rows.append(row(B, case, CRASH, "rate", rate[CRASH], "ops/s"))
        rows.append(row(B, case, CRASH, "ratio", rate[CRASH] / rate[CALM] if rate[CALM] else 0.0, f"x {CALM}"))
        rows.append(published(B, f"{phase}-4k-b32", "published-redleaf", "ratio", PUBLISHED[phase],
                              "x no crashes", PUBLISHED_NOTE))
        for system, r in res.items():
            rows.append(row(B, case, system, "errors", r["st"][phase]["errors"] + r["st"][phase]["bad"], "errors"))
    for system, r in res.items():
        rows.append(row(B, "fs-data-verified", system, "count", r["st"]["seqread"]["verified"] + r["good"], "blocks"))
        rows.append(row(B, "fs-data-verified", system, "errors", r["bad"], "blocks"))
        rows.append(row(B, "fs-fsck", system, "errors", len(r["fsck"]), "problems"))
    rows.append(row(B, "fs-kills", CRASH, "count", len(crash["kills"]), "kills"))
    rows.append(row(B, "fs-driver-restarts", CRASH, "count", crash["driver_restarts"], "restarts"))
    delays = _first_completion_delays(crash)
    if delays:
        rows.append(row(B, "fs-kill-to-first-completion", CRASH, "median", statistics.median(delays) * 1e3, "ms"))
        rows.append(row(B, "fs-kill-to-first-completion", CRASH, "p99",
                        sorted(delays)[min(len(delays) - 1, int(len(delays) * 0.99))] * 1e3, "ms"))
    for system, r in res.items():
        for phase in ("seqread", "seqwrite"):
            if "first_error" in r["st"][phase]:
                print(f"bench recovery --fs: {system} {phase}: first error {r['st'][phase]['first_error']}")
        for p in r["fsck"][:5]:
            print(f"bench recovery --fs: {system}: fsck: {p}")
    if a.plot:
        _plot(a.plot, {**calm, **calm["st"]}, {**crash, **crash["st"]},
              title="NVMe driver recovery under Rv6's fs (redleaf bench recovery --driver nvme --fs)",
              unit="K file ops/s", phases=("sequential 4 KiB reads of a file", "sequential 4 KiB writes"))
    return rows
