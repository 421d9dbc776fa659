"""BDevDisk: rv6's block-device protocol (disk.py) over a `BDev` proxy, so the file
system runs on a driver domain (the NVMe driver, through its shadow) as on a file.

Owns: one block buffer for reads and one for writes in the exchange heap, and the
mapping of the driver's `BlockError` to `DiskError` (EIO). Calls: the `BDev` proxy it is
given (redleaf.drivers.bdev) and the heap's `alloc`; nothing of the file system but its
errors and format constants.

`flush` is the device's flush (an NVMe Flush: what was written before it is on the
medium), so the log's commit, and with it fsync, means durable. Blocks go one per call
(`BDev`); a batch (`write_blocks`) is issued in order, one call per block: the log's
commits are a few dozen blocks, which BDev serves well enough, and it keeps the
adapter free of NvmeBDev's one-client-at-a-time rule.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from redleaf.drivers.bdev import BLOCK_SIZE, Block, BlockError

from .disk import ZERO, _Checked
from .errors import DiskError
from .format import BSIZE

assert BLOCK_SIZE == BSIZE, "rv6 blocks and the driver's blocks must be the same size"


class BDevDisk(_Checked):
    """A `BlockDevice` over a `BDev` proxy; `heap` is the calling domain's heap."""

    def __init__(self, heap, bdev):
        self.heap = heap
        self.bdev = bdev
        bsize, nblocks = bdev.info()
        if bsize != BSIZE:
            raise DiskError(f"the device has {bsize}-byte blocks; rv6 needs {BSIZE}")
        self.nblocks = int(nblocks)
        self._rbuf = heap.alloc(Block)
        self._wbuf = heap.alloc(Block)
        self.reads = self.writes = self.flushes = 0

    def read_block(self, bno: int) -> bytes:
        self._check(bno)
        buf, self._rbuf = self._rbuf, None
        if buf is None:     # a failed read gave its buffer up (a declared error consumes moves)
            buf = self.heap.alloc(Block)
        try:
            buf = self.bdev.read(bno, buf)
        except BlockError as e:
            raise DiskError(f"reading block {bno}: {e}") from e
        self._rbuf = buf
        self.reads += 1
        data = bytes(buf.np["data"])
        return data

    def write_block(self, bno: int, data: bytes) -> None:
        self._check(bno, data)
        self._wbuf.np["data"][:] = np.frombuffer(data, np.uint8)
        try:
            self.bdev.write(bno, self._wbuf)    # borrowed: the buffer stays ours
        except BlockError as e:
            raise DiskError(f"writing block {bno}: {e}") from e
        self.writes += 1

    def write_blocks(self, items: Iterable[tuple[int, bytes]]) -> None:
        for bno, data in items:
            self.write_block(bno, data)

    def flush(self) -> None:
        try:
            self.bdev.flush()
        except BlockError as e:
            raise DiskError(f"flush: {e}") from e
        self.flushes += 1

    def looks_blank(self, probe_blocks: int = 64) -> bool:
        """True when the first `probe_blocks` blocks and the last one read as zeros: where
        every common format (rv6, ext*, FAT, GPT and its backup, MBR) keeps its
        signature, so a foreign image is never taken for a blank one."""
        probe = list(range(min(probe_blocks, self.nblocks)))
        if self.nblocks:
            probe.append(self.nblocks - 1)
        return all(self.read_block(b) == ZERO for b in probe)

    def close(self) -> None:
        for b in (self._rbuf, self._wbuf):
            if b is not None and b.alive:
                b.drop()
        self._rbuf = self._wbuf = None
