"""The NVMe recovery experiment's client as a domain, for the co-located rows of
`redleaf bench recovery --driver nvme --colocated` (issue #17, DESIGN §7a, §8).

In RedLeaf the shadow is trusted code beside its client.  To measure recovery in
that placement the client must be a domain in the shadow's group (an attached client
is always a process of its own), with the driver in a process of its own so that a
SIGKILL of the driver leaves the group alive.  This domain is that client: the
attached benchmark process asks it for one slice of sequential I/O at a time, and it
runs bench.recovery_nvme's own slice loop (the same batches, the same per-block
checks of every read and every completed write) on the group's thread through the
NvmeBDev proxy it was granted (`uses = { nvme = ... }`).  At the end the benchmark
collects what the attached client keeps in its own run: the counts of each phase,
the completion log, the slices and the blocks written, as vectors moved to the
caller (times are CLOCK_MONOTONIC, shared by every process, so they line up with
the benchmark's kill times).

Loaded by import path from a manifest, as any domain; nothing imports this module.

May call: domains (interface, the proxies it was granted), shared_heap,
drivers.bdev and drivers.nvme.client, bench.recovery_nvme (the slice loop).
"""

from __future__ import annotations

import numpy as np

from redleaf.domains import interface
from redleaf.shared_heap import RRefVec

PHASES = ("seqread", "seqwrite")


@interface
class RecoveryLoad:
    def slice(self, phase: str, write: bool, seconds: float, nblocks: int) -> int: ...
    def counts(self, phase: str) -> tuple[int, float, int, int, int]: ...
    def log(self, phase: str) -> RRefVec: ...
    def slices(self) -> RRefVec: ...
    def written(self) -> RRefVec: ...
    def flush(self) -> None: ...


def _vec(heap, arr: np.ndarray) -> RRefVec:
    v = heap.alloc_vec(arr.dtype, max(1, arr.size))
    v.np[:arr.size] = arr
    return v


class RecoveryLoadDomain(RecoveryLoad):
    """Keeps one run of the experiment (bench.recovery_nvme's run dict) across slices."""

    def __init__(self, ctx):
        from redleaf.drivers.bdev import BDev, NvmeBDev
        from redleaf.drivers.nvme.client import BatchQueue
        from redleaf.bench.recovery_nvme import BATCH

        self.ctx = ctx
        self.bdev = ctx.use("nvme", BDev)
        self.run = {"q": BatchQueue(ctx.heap, ctx.use("nvme", NvmeBDev), depth=BATCH),
                    "log": {p: [] for p in PHASES}, "written": {}, "slices": []}
        for p in PHASES:
            self.run[p] = {"next": 0, "done": 0, "active": 0.0, "errors": 0, "verified": 0, "bad": 0}

    def slice(self, phase, write, seconds, nblocks):
        """One slice of I/O, continuing where the last one of `phase` stopped: the
        requests completed so far in the phase."""
        from redleaf.bench.recovery_nvme import _slice

        if phase not in PHASES:
            raise ValueError(f"phase {phase!r}: use one of {PHASES}")
        _slice(self.run, phase, write, seconds, nblocks)
        self.ctx.rt.beat()  # a slice is long: the watchdog must not take it for a hang
        return self.run[phase]["done"]

    def counts(self, phase):
        st = self.run[phase]
        return st["done"], st["active"], st["errors"], st["verified"], st["bad"]

    def log(self, phase):
        """(time, completions) per call that returned some, flattened."""
        return _vec(self.ctx.heap, np.array(self.run["log"][phase], dtype=np.float64).reshape(-1))

    def slices(self):
        return _vec(self.ctx.heap, np.array(self.run["slices"], dtype=np.float64).reshape(-1))

    def written(self):
        """(block, the word written there last) of every completed write, flattened."""
        w = self.run["written"]
        return _vec(self.ctx.heap, np.array([x for kv in w.items() for x in kv], dtype=np.uint64))

    def flush(self):
        self.bdev.flush()
