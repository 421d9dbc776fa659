"""In-process rigs: a BAR, a DMA buffer with a bump allocator, a Nic and an
IxgbeDriver wired together (``step`` = ``nic.process``).  For tests, benchmarks
and as an example of what a process shell does.
"""
from __future__ import annotations

import numpy as np

from . import regs as R
from .driver_core import IxgbeDriver
from .nic import Nic


class BumpAllocator:
    """dma_alloc(nbytes, align) -> (offset, memoryview) over one buffer window."""

    def __init__(self, dma: memoryview, base: int, limit: int):
        self.dma = memoryview(dma).cast("B")
        self.next = base
        self.limit = limit

    def __call__(self, nbytes: int, align: int = 64) -> tuple[int, memoryview]:
        off = -(-self.next // align) * align
        if off + nbytes > self.limit:
            raise MemoryError("DMA window exhausted")
        self.next = off + nbytes
        return off, self.dma[off:off + nbytes]

    def buffers(self, count: int, size: int = 2048) -> list[int]:
        off, _ = self(count * size, size)
        return list(range(off, off + count * size, size))


class Port:
    """One NIC + driver in a shared in-process DMA buffer."""

    def __init__(self, wire, dma: bytearray | None = None, dma_size: int = 16 << 20, *,
                 window: tuple[int, int] | None = None, num_rx_desc: int = 512,
                 num_tx_desc: int = 512, num_bufs: int = 2048, batch: int = 256,
                 alloc: BumpAllocator | None = None):
        self.bar = bytearray(R.BAR_SIZE)
        self.dma = dma if dma is not None else bytearray(dma_size)
        base, limit = window if window else (4096, len(self.dma))
        self.mem = np.frombuffer(self.dma, dtype=np.uint8)
        self.nic = Nic(memoryview(self.bar), memoryview(self.dma), base, limit, wire, batch=batch)
        self.alloc = alloc or BumpAllocator(memoryview(self.dma), base, limit)
        self.drv = IxgbeDriver(memoryview(self.bar), self.alloc, num_rx_desc=num_rx_desc,
                               num_tx_desc=num_tx_desc, step=self.nic.process)
        self.free = self.alloc.buffers(num_bufs) if num_bufs else []

    def init(self, rx_bufs: int | None = None) -> None:
        n = self.drv.nrx if rx_bufs is None else rx_bufs
        give, self.free = self.free[:n], self.free[n:]
        self.drv.init(give)


def loopback_cost(batch: int = 256, seconds: float = 1.0, frame: int = 60) -> dict:
    """Driver + NIC CPU cost per packet in one process over a loopback wire:
    tx_batch -> nic.process -> tx_reclaim -> rx_batch -> (send the same buffers again)."""
    import time

    from .wire import LoopbackWire
    p = Port(LoopbackWire(), batch=batch, num_bufs=2 * batch + 1024)
    p.init()
    drv, nic = p.drv, p.nic
    offs = np.array(p.free[:batch], dtype=np.int64)
    del p.free[:batch]
    lens = np.full(batch, frame, dtype=np.int64)
    t_drv = t_nic = 0.0
    n = 0
    pc = time.perf_counter
    end = pc() + seconds
    while pc() < end:
        t0 = pc()
        drv.tx_batch_arrays(offs, lens)
        t1 = pc()
        nic.process()
        t2 = pc()
        drv.give_rx_buffers(drv.tx_reclaim_arrays())
        offs, lens = drv.rx_batch_arrays(batch)
        t3 = pc()
        n += len(offs)
        t_drv += (t1 - t0) + (t3 - t2)
        t_nic += t2 - t1
    s = drv.stats()
    return {"batch": batch, "packets": n, "driver_us": t_drv / n * 1e6, "nic_us": t_nic / n * 1e6,
            "total_us": (t_drv + t_nic) / n * 1e6, "rx_missed": s["rx_missed"], "errors": nic.error_count}
