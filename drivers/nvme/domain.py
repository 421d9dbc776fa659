"""The NVMe driver domain: programs the emulated controller through its BAR, with
queues and data buffers in the exchange heap, and exports `BDev` and `NvmeBDev`.

Manifest:

    [[domain]]
    name = "nvme0"
    target = "drivers.nvme.domain:NvmeDriver"
    config = { device = "nvme0-dev", queue_depth = 256 }

Waiting for the device: after writing a doorbell the driver wakes the device process;
the device wakes the driver when it posts completions (the interrupt); in between
the driver spins briefly and then sleeps on its doorbell (Runtime.wait_until).
"""

from __future__ import annotations

import numpy as np

from drivers.bdev import BDev, Block, BlockError, BlockReq, NvmeBDev
from shared_heap import RRefDeque

from . import spec as S
from .driver_core import NvmeDriverCore


class NvmeDriver(BDev, NvmeBDev):
    def __init__(self, ctx):
        self.ctx = ctx
        rt = self.rt = ctx.rt
        cfg = ctx.config
        info = rt.ctl.request("bind_device", domain_id=rt.domain_id, device=cfg.get("device", "nvme0-dev"))
        self.bar = rt.mem[info["bar"]:info["bar"] + info["bar_size"]]
        self.dev_waker = rt.waker_for(info["device_id"])
        self._dma_keep = []
        self.core = NvmeDriverCore(self.bar, self._dma_alloc, io_queue_size=int(cfg.get("queue_depth", 256)))
        self.core.initialize(self._step, timeout=10.0)
        self.block_size = 4096
        self.nblocks = self.core.nsze if hasattr(self.core, "nsze") else 0
        self.pending: dict[int, object] = {}  # tag -> RRef of the request in flight
        self.done: list = []  # (tag, status) reaped but not yet collected
        self.next_tag = 1
        self.submitted = self.completed = self.errors = 0
        ctx.export(ctx.name, self, BDev)
        ctx.export(ctx.name, self, NvmeBDev)

    # -- plumbing ------------------------------------------------------------------
    def _dma_alloc(self, nbytes: int, align: int):
        size = max(nbytes, align)
        ref = self.ctx.heap.alloc_vec(np.uint8, size)
        if ref.offset % align:
            raise MemoryError(f"heap object at {ref.offset:#x} is not {align}-aligned")
        self._dma_keep.append(ref)
        return ref.offset, ref.buf[:nbytes]

    def _step(self) -> None:
        self.dev_waker.wake()
        self.rt.wait_until(lambda: False, 0.0005, spin_ns=50_000)

    def _kick(self) -> None:
        if self.core.ring():
            self.dev_waker.wake()

    def _tag(self) -> int:
        t = self.next_tag
        self.next_tag = t + 1
        return t

    def _wait_one(self, tag: int, timeout: float = 10.0) -> int:
        box = []

        def ready():
            for t, st in self.core.reap():
                if t == tag:
                    box.append(st)
                else:
                    self.done.append((t, st))
            return bool(box)

        if not self.rt.wait_until(ready, timeout):
            raise BlockError(f"NVMe command {tag} did not complete in {timeout}s")
        return box[0]

    # -- BDev -----------------------------------------------------------------------
    def read(self, block: int, buf):
        self._check_block(block)
        tag = self._tag()
        self.core.submit_read(block, 1, buf.offset, tag)
        self._kick()
        st = self._wait_one(tag)
        if st:
            raise BlockError(f"read of block {block} failed: {S.status_str(st)}")
        return buf

    def write(self, block: int, buf) -> None:
        self._check_block(block)
        tag = self._tag()
        self.core.submit_write(block, 1, buf.offset, tag)
        self._kick()
        st = self._wait_one(tag)
        if st:
            raise BlockError(f"write of block {block} failed: {S.status_str(st)}")

    def flush(self) -> None:
        tag = self._tag()
        self.core.submit_flush(tag)
        self._kick()
        st = self._wait_one(tag)
        if st:
            raise BlockError(f"flush failed: {S.status_str(st)}")

    def info(self) -> tuple[int, int]:
        return self.block_size, self.nblocks

    def _check_block(self, block: int) -> None:
        if not 0 <= block < (self.nblocks or 1 << 62):
            raise BlockError(f"block {block} is outside the device (0..{self.nblocks - 1})")

    # -- NvmeBDev ---------------------------------------------------------------------
    def submit_and_poll(self, submit, collect, write: bool):
        n = 0
        core = self.core
        space = core.space()
        reqs = []
        while n < space and len(submit):
            r = submit.pop_front()
            tag = self._tag()
            self.pending[tag] = r
            reqs.append((int(r.np["block"]), 1, r.offset, tag))
            n += 1
        if reqs:
            core.submit_many(S.NVM_WRITE if write else S.NVM_READ, reqs)
            self._kick()
            self.submitted += n
        self._collect(collect)
        return n, submit, collect

    def poll(self, collect):
        k = self._collect(collect)
        return k, collect

    def _collect(self, collect) -> int:
        k = 0
        done = self.done + self.core.reap()
        self.done = []
        for tag, st in done:
            r = self.pending.pop(tag, None)
            if r is None:
                continue
            if st:
                self.errors += 1
            r.np["status"] = st
            collect.push_back(r)
            k += 1
        self.completed += k
        return k

    def stats(self) -> tuple[int, int, int, int]:
        return self.submitted, self.completed, self.errors, len(self.pending)
