"""`nvme-rw`: random 4 KiB reads and writes on the NVMe driver behind its shadow.

Every block written carries (block, version) in each of its 512 words, the version
growing with every write, so a read is checked whole: it must return the last
write that was acknowledged (or, for a write whose call failed, the one before or
that one: it may or may not have reached the disk), and a block never written
must read as zeros (the image starts empty).  The client calls the shadow
(`nvme0`, BDev), so killing the driver (`nvme0.driver`) or its device
(`nvme0-dev`, which takes the driver with it) must show it no error at all; only a
fault of the shadow itself may (DomainCrashed and the like).  At the end every
block written is read back once more.

May call: domains (attach), drivers (bdev, nvme manifests), shared_heap.
"""

from __future__ import annotations

import os
import random
import threading

import numpy as np

from .base import OUTAGE_ERRORS, Recorder, Workload

SHADOW = "nvme0"
BLOCKS = 256  # the blocks the workload uses: few enough that reads hit written blocks
WORDS = 4096 // 8


def pattern(block: int, version: int) -> np.ndarray:
    a = np.empty(WORDS, dtype=np.uint64)
    a[0::2] = block
    a[1::2] = version
    return a


def shadowed_nvme_manifest(image: str, size: str, heap: str = "64MiB") -> str:
    """An instance of one emulated NVMe device and its driver behind the shadow, every
    process of it with a restart policy a campaign cannot exhaust (the fs workloads
    put their domains on top of it)."""
    from redleaf.drivers.nvme.manifests import nvme_manifest

    # a watchdog of 1 s: a stopped or hung driver is replaced quickly; no fdatasync:
    # the campaign kills processes, not the machine, and the page cache survives them
    text = nvme_manifest(image, size, shadow=True, heap=heap, sync="none", max_restarts=1_000_000, period_s=1.0,
                         backoff_s=0.0, watchdog_s=1.0)
    # the device too is a target: it must not run out of restarts in a campaign
    # (the default intensity, 5 in 10 s, is for a real card that keeps failing)
    marker = 'target = "redleaf.drivers.nvme.device:NvmeDevice"\n'
    assert marker in text, "drivers.nvme.manifests changed: update the device's restart policy here"
    return text.replace(marker, marker + 'restart = "permanent"\nmax_restarts = 1000000\nperiod_s = 1.0\n'
                                         "backoff_s = 0.0\n", 1)


class NvmeRwWorkload(Workload):
    name = "nvme-rw"
    targets = "nvme0*"
    # the driver serves the shadow's BDev calls; the shadow serves ours
    methods = {"nvme0.driver": ("read", "write"), SHADOW: ("read", "write")}
    deadline_s = 30.0  # BDev's interface deadline
    joinable = False
    joinable_why = ("writes raw blocks and expects an empty disk: on a running instance it would overwrite "
                    "what is there (the default instance's rv6fs lives on nvme0)")

    def __init__(self, tmpdir: str):
        super().__init__(tmpdir)
        self.acked: dict[int, int] = {}  # block -> version of the last acknowledged write
        self.maybe: dict[int, set[int]] = {}  # block -> versions whose write failed (may have landed)
        self.seed = 0

    def manifest(self) -> str:
        return shadowed_nvme_manifest(os.path.join(self.tmpdir, "nvme0.img"), "8MiB")

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        return kind in OUTAGE_ERRORS and SHADOW in targets

    def _valid(self, block: int) -> set[int]:
        return {self.acked.get(block, 0)} | self.maybe.get(block, set())

    def _check_read(self, rec: Recorder, block: int, data: np.ndarray) -> None:
        words = data.view(np.uint64)
        valid = self._valid(block)
        if (words == 0).all():
            got = 0
        elif (words[0::2] == block).all() and (words[1::2] == words[1]).all():
            got = int(words[1])
        else:
            rec.problem(f"block {block} read back torn or foreign data (first words {words[:4].tolist()}); "
                        f"expected version {sorted(valid)}")
            return
        if got not in valid:
            rec.problem(f"block {block} read back version {got}, expected {sorted(valid)} "
                        f"(the last acknowledged write is {self.acked.get(block, 0)})")
        else:
            # what was read is what the disk holds: an uncertain write is settled
            self.acked[block] = got
            self.maybe.pop(block, None)

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        from redleaf.domains import attach
        from redleaf.drivers.bdev import BDev, Block

        rng = random.Random(self.seed)
        version = 0
        with attach(instance) as d:
            disk = d.lookup(SHADOW, BDev)
            self.disk, self.heap = disk, d.heap
            dl = self.deadline_s
            while not stop.is_set():
                self.gate()
                block = rng.randrange(BLOCKS)
                buf = d.heap.alloc(Block)
                if rng.random() < 0.5:
                    version += 1
                    buf.np["data"].view(np.uint64)[:] = pattern(block, version)
                    with rec.call("BDev.write", dl) as c:
                        disk.write(block, buf)
                    if c.failed:
                        self.maybe.setdefault(block, set()).add(version)
                    else:
                        self.acked[block] = version
                        self.maybe.pop(block, None)
                else:
                    out = None
                    with rec.call("BDev.read", dl) as c:
                        out = disk.read(block, buf)
                    if out is not None:
                        self._check_read(rec, block, np.asarray(out.np["data"]))
                        buf = out
                if buf.alive:
                    buf.drop()
            # the final read-back, still attached (final_problems runs after the loop)
            self.final = self._read_back(disk, d.heap, rec)

    def _read_back(self, disk, heap, rec: Recorder) -> list[str]:
        """Read every block written once more (wrong data goes to rec.problems, which
        the campaign checks; a read that fails is returned)."""
        from redleaf.domains.errors import RpcError
        from redleaf.drivers.bdev import Block

        for block in sorted(self.acked):
            buf = heap.alloc(Block)
            try:
                out = disk.read(block, buf)
            except RpcError as e:
                return [f"the final read-back of block {block} failed: {type(e).__name__}: {e}"]
            self._check_read(rec, block, np.asarray(out.np["data"]))
            out.drop()
        return []

    def final_problems(self) -> list[str]:
        return getattr(self, "final", ["the final read-back did not run (the loop ended early)"])
