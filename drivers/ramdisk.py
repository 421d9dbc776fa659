"""RamDisk: a block device held in a domain's own memory, exporting `BDev` only.

The simplest device a file system can run on, and the one that exports nothing but the
one-block-a-call interface, so what sits above it (Rv6's fs) is exercised on `BDev`
alone. Its blocks live in the domain's private heap: they die with it, as a RAM disk's
contents die with the machine (a restarted RamDisk is blank).

Manifest:

    [[domain]]
    name = "ram0"
    target = "redleaf.drivers.ramdisk:RamDisk"
    config = { size = "16MiB" }

Calls: the domain runtime and the heap (the caller's Block RRefs); nothing else.
A block number outside the device is the declared `BlockError`, never a panic.
"""

from __future__ import annotations

import numpy as np

from redleaf.domains.units import parse_size
from redleaf.drivers.bdev import BLOCK_SIZE, BDev, BlockError

#: the largest RAM disk a manifest may ask for (its memory is the domain's own)
MAX_SIZE = 4 << 30


class RamDisk(BDev):
    def __init__(self, ctx):
        size = parse_size(ctx.config.get("size", "16MiB"), "size")
        if not BLOCK_SIZE <= size <= MAX_SIZE or size % BLOCK_SIZE:
            raise ValueError(f"size {size}: a multiple of {BLOCK_SIZE} bytes, at most {MAX_SIZE >> 30} GiB")
        self.nblocks = size // BLOCK_SIZE
        self.blocks = np.zeros((self.nblocks, BLOCK_SIZE), np.uint8)
        self.flushes = 0
        ctx.export(ctx.name, self, BDev)

    def _check(self, block) -> int:
        if not isinstance(block, int) or isinstance(block, bool) or not 0 <= block < self.nblocks:
            raise BlockError(f"block {block!r} is outside the device (0..{self.nblocks - 1})")
        return block

    def read(self, block: int, buf):
        try:
            b = self._check(block)
        except BlockError:
            buf.drop()          # a declared error consumes the moved buffer, as the NVMe driver's does
            raise
        buf.np["data"][:] = self.blocks[b]
        return buf

    def write(self, block: int, buf) -> None:
        self.blocks[self._check(block)] = buf.np["data"]

    def flush(self) -> None:
        self.flushes += 1       # memory is as durable as this device gets

    def info(self) -> tuple[int, int]:
        return BLOCK_SIZE, self.nblocks
