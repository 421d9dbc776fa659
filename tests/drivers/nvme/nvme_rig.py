"""Shared rig for the NVMe tests: controller + driver core in one process."""
from __future__ import annotations

from redleaf.drivers.nvme import regs as R
from redleaf.drivers.nvme.controller import NvmeController
from redleaf.drivers.nvme.driver_core import NvmeDriverCore
from redleaf.drivers.nvme.store import MemoryBlockStore


class BumpAllocator:
    """dma_alloc over a window of the shared DMA buffer."""

    def __init__(self, dma: memoryview, start: int, end: int) -> None:
        self.dma, self.pos, self.end = dma, start, end

    def __call__(self, nbytes: int, align: int):
        off = -(-self.pos // align) * align
        if off + nbytes > self.end:
            raise MemoryError("DMA arena exhausted")
        self.pos = off + nbytes
        return off, self.dma[off:off + nbytes]


class Rig:
    def __init__(self, *, disk_blocks=256, lba_shift=12, dma_size=4 << 20, dma_base=0x10000,
                 io_queue_size=64, mqes=1024, max_queues=4, store=None, dstrd=0,
                 init=True):
        self.bar_buf = bytearray(R.BAR_SIZE)
        self.dma_buf = bytearray(dma_size)
        self.dma = memoryview(self.dma_buf)
        self.dma_base = dma_base
        self.dma_limit = dma_size - 0x10000          # guard area on both sides
        self.store = store or MemoryBlockStore(disk_blocks << lba_shift)
        self.ctrl = NvmeController(self.bar_buf, self.dma, dma_base, self.dma_limit, self.store,
                                   max_queues=max_queues, mqes=mqes, lba_shift=lba_shift,
                                   dstrd=dstrd)
        # driver allocations first (queues, identify, PRP lists), data buffers above
        self.alloc = BumpAllocator(self.dma, dma_base, dma_base + (1 << 20))
        self.bufs = BumpAllocator(self.dma, dma_base + (1 << 20), self.dma_limit)
        self.bar = R.Bar(self.bar_buf)
        self.drv = NvmeDriverCore(self.bar_buf, self.alloc, io_queue_size=io_queue_size)
        if init:
            self.drv.initialize(self.ctrl.process)

    def step(self):
        return self.ctrl.process()

    def run(self, timeout=5.0):
        """Ring, let the device run, reap everything in flight."""
        return self.drv.wait_all(self.ctrl.process, timeout)

    def buf(self, nbytes, align=4096):
        return self.bufs(nbytes, align)

