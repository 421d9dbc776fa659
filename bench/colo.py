"""Benchmark drivers that run inside an instance, as domains (DESIGN §7a, §8).

A co-located benchmark needs its client in the group: an attached client is a
process of its own, so it would measure the channel hop, not the co-located one.
These domains are that client: loaded into the group beside what they measure
(`uses` names it), they run the measuring loop on the group's thread through the
proxy they were handed, and return the samples in the exchange heap (an RRefVec
of float64 seconds, moved to the caller) for the attached benchmark process to
summarise.  The loops are the ones the attached benchmarks run (bench.peers'
time_calls, bench.nvme's _run_redleaf), so both placements measure the same work.

Loaded by import path from a manifest, as any domain; nothing imports this module.

May call: domains (interface, the proxies it was granted), shared_heap,
drivers.bdev and drivers.nvme.client (the NVMe loop), bench.peers and bench.nvme.
"""

from __future__ import annotations

import numpy as np

from redleaf.domains import interface
from redleaf.shared_heap import RRefVec


@interface
class CallLoad:
    def measure(self, case: str, n: int, size: int) -> RRefVec: ...


@interface
class NvmeLoad:
    def info(self) -> tuple[int, int]: ...
    def measure(self, kind: str, batch: int, seconds: float, seed: int) -> tuple[int, float, RRefVec]: ...
    def write_read(self, block: int, byte: int) -> int: ...


def _samples(heap, xs) -> RRefVec:
    v = heap.alloc_vec(np.float64, max(1, len(xs)))
    v.np[:len(xs)] = xs
    return v


class CallLoadDomain(CallLoad):
    """Times calls to Echo (`uses = {echo = ...}`) from wherever it is placed."""

    def __init__(self, ctx):
        from redleaf.domains.builtin.echo import Echo

        self.ctx = ctx
        self.echo = ctx.use("echo", Echo)

    def measure(self, case, n, size):
        from redleaf.bench.peers import time_calls

        e, heap = self.echo, self.ctx.heap
        if case == "null":
            fn = e.null
        elif case == "int":
            fn = lambda: e.inc(1)  # noqa: E731
        elif case in ("rref", "borrow") or case.startswith("move-"):
            box = [heap.alloc_vec(np.uint8, size)]
            box[0].np[:1] = 1
            if case != "borrow":  # rref and move-<size>: moved to Echo and moved back
                def fn():
                    box[0] = e.roundtrip(box[0])
            else:
                fn = lambda: e.peek(box[0])  # noqa: E731
        else:
            raise ValueError(f"unknown case {case!r}")
        for _ in range(min(n, 2000)):  # warm-up, as the attached benchmark's
            fn()
        xs = time_calls(fn, n)
        if case != "null" and case != "int":
            box[0].drop()
        return _samples(heap, xs)


class NvmeLoadDomain(NvmeLoad):
    """Runs bench.nvme's client loop against the BDev it uses (`uses = {nvme = ...}`)."""

    def __init__(self, ctx):
        from redleaf.drivers.bdev import BDev, NvmeBDev
        from redleaf.drivers.nvme.client import BatchQueue

        self.ctx = ctx
        self.bdev = ctx.use("nvme", BDev)
        self.q = BatchQueue(ctx.heap, ctx.use("nvme", NvmeBDev), depth=64)

    def info(self):
        return self.bdev.info()

    def write_read(self, block, byte):
        """Write `byte` over a block and read it back through BDev: the sum read."""
        from redleaf.drivers.bdev import Block

        buf = self.ctx.heap.alloc(Block)
        buf.np["data"][:] = byte
        self.bdev.write(block, buf)
        back = self.bdev.read(block, buf)
        total = int(back.np["data"].sum(dtype=np.uint64))
        back.drop()
        return total

    def measure(self, kind, batch, seconds, seed):
        from redleaf.bench.nvme import _run_redleaf

        nblocks = self.bdev.info()[1]
        n, dt, lat = _run_redleaf(self.q, kind, batch, nblocks, seconds, np.random.default_rng(seed))
        self.ctx.rt.beat()
        return n, dt, _samples(self.ctx.heap, lat)
