"""A driver domain's claim on a device: where its registers are, how to ring it, and
DMA memory for its rings and queues.

Every driver starts the same way: ask the supervisor to bind the device (the device
learns whom to interrupt, the supervisor learns what to quiesce if the driver dies),
map the BAR out of the exchange heap, and allocate descriptor rings in the heap (a
DMA address is a heap offset).  The rings stay owned by the driver domain, so they
are reclaimed with it, after the supervisor has quiesced the device.
"""

from __future__ import annotations

import numpy as np


class DmaAllocError(RuntimeError):
    """The heap returned memory the device cannot use (misaligned)."""


class DeviceBinding:
    def __init__(self, ctx, device: str):
        rt = ctx.rt
        self.device = device
        self.info = rt.ctl.request("bind_device", domain_id=rt.domain_id, device=device)
        self.bar = rt.mem[self.info["bar"]:self.info["bar"] + self.info["bar_size"]]
        self.waker = rt.waker_for(self.info["device_id"])  # ring after a doorbell write
        self._heap = ctx.heap
        self._keep: list = []  # DMA memory lives as long as the driver

    def dma_alloc(self, nbytes: int, align: int):
        """(DMA address, writable view) of `nbytes` aligned to `align` in the heap."""
        ref = self._heap.alloc_vec(np.uint8, max(nbytes, align))
        if ref.offset % align:
            raise DmaAllocError(f"heap object at {ref.offset:#x} is not {align}-aligned for {self.device}")
        self._keep.append(ref)
        return ref.offset, ref.buf[:nbytes]
