"""The block cache (xv6's bio.c). It calls only the device (disk.py).

Every block the file system reads or changes lives in one `Buf` here, so two layers never
hold two different copies of a block. `block(bno)` lends a buffer for the span of a `with`
(its refcount keeps it in place); changes are made in `buf.data` and handed to the log,
which *pins* the buffer: a pinned buffer is never evicted, since its new contents exist
nowhere else until the transaction is installed. Eviction is LRU among buffers neither
lent nor pinned, so a clean buffer can always be dropped and read again.

The buffers' bytes live in one numpy array of `capacity` rows (a `Buf` holds its row,
and `data` is a writable memoryview of it), so a read of many blocks is one gather
(`gather`): the blocks it misses come from the device in one batch (`read_blocks`) and
the copy out is one numpy take, not a Python loop over 4 KiB slices. `block` is the
same lookup for one block.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from .disk import BlockDevice
from .format import BSIZE


class CacheExhausted(RuntimeError):
    """Every buffer is lent or pinned: a layer leaked a buffer or the cache is smaller than
    the log (a bug, not a user error)."""


class Buf:
    __slots__ = ("bno", "slot", "data", "refcnt", "pinned")

    def __init__(self, bno: int, slot: int, data: memoryview):
        self.bno = bno
        self.slot = slot
        self.data = data
        self.refcnt = 0
        self.pinned = False


class BufCache:
    def __init__(self, dev: BlockDevice, capacity: int):
        self.dev = dev
        self.capacity = capacity
        self.store = np.zeros((capacity, BSIZE), np.uint8)
        self._rows = [memoryview(r) for r in self.store]
        self._free = list(range(capacity - 1, -1, -1))
        self._bufs: OrderedDict[int, Buf] = OrderedDict()
        self.hits = self.misses = 0

    def _get(self, bno: int, read: bool) -> Buf:
        b = self._bufs.get(bno)
        if b is not None:
            self._bufs.move_to_end(bno)
            self.hits += 1
            return b
        self.misses += 1
        b = self._new(bno)
        # a caller about to overwrite the whole block need not read it first
        if read:
            b.data[:] = self.dev.read_block(bno)
        else:
            self.store[b.slot] = 0
        return b

    def _new(self, bno: int) -> Buf:
        """A buffer for `bno`, not yet filled (the caller fills it before anyone reads it)."""
        if not self._free:
            self._evict()
        slot = self._free.pop()
        b = self._bufs[bno] = Buf(bno, slot, self._rows[slot])
        return b

    def _evict(self) -> None:
        for bno, b in self._bufs.items():
            if b.refcnt == 0 and not b.pinned:
                del self._bufs[bno]
                self._free.append(b.slot)
                return
        raise CacheExhausted(f"all {self.capacity} cache buffers are in use or pinned")

    def gather(self, bnos: list[int], out: np.ndarray) -> None:
        """Copy blocks `bnos` into the rows of `out` (shape (len(bnos), BSIZE)); block
        number 0 (a file's hole) reads as zeros. The cached blocks are copied out first,
        in one copy; those not cached are then read from the device in batches (as many
        as the cache can take at once) and stay cached, most recent last, as `block`
        leaves them."""
        bufs = self._bufs
        get, touch = bufs.get, bufs.move_to_end
        slots: list[int] = []
        miss: list[int] = []
        holes: list[int] = []
        for i, bno in enumerate(bnos):
            b = get(bno)
            if b is not None:
                touch(bno)
                slots.append(b.slot)
            elif bno:
                miss.append(i)
            else:
                holes.append(i)
        self.hits += len(slots)
        if not miss and not holes:
            self._copy_out(slots, out)
            return
        if slots:                        # before a miss's buffer can take a hit's row
            hit = np.ones(len(bnos), bool)
            hit[miss + holes] = False
            out[hit] = self.store[slots]
        if holes:
            out[holes] = 0
        if not miss:
            return
        self.misses += len(miss)
        # distinct blocks in order (a file never maps a block twice; a corrupt one might)
        where: dict[int, list[int]] = {}
        for i in miss:
            where.setdefault(bnos[i], []).append(i)
        want = list(where)
        turn = max(1, self.capacity - self._in_use())
        for k in range(0, len(want), turn):
            fresh = [self._new(bno) for bno in want[k:k + turn]]
            try:
                self.dev.read_blocks([b.bno for b in fresh], self.store, [b.slot for b in fresh])
            except BaseException:
                for b in fresh:
                    del bufs[b.bno]
                    self._free.append(b.slot)
                raise
            for b in fresh:
                out[where[b.bno]] = self.store[b.slot]

    def _copy_out(self, slots: list[int], out: np.ndarray) -> None:
        """out[i] = row slots[i]: one slice copy when the rows are consecutive (a file read
        in one go was cached in one go), else one fancy-indexed copy."""
        s0, n = slots[0], len(slots)
        if slots[-1] - s0 == n - 1 and (n < 3 or slots == list(range(s0, s0 + n))):
            out[:] = self.store[s0:s0 + n]
        else:
            out[:] = self.store[slots]

    def _in_use(self) -> int:
        return sum(1 for b in self._bufs.values() if b.refcnt or b.pinned)

    @contextmanager
    def block(self, bno: int, read: bool = True) -> Iterator[Buf]:
        """Lend the buffer of block `bno` for the `with` body (xv6's bread/brelse)."""
        b = self._get(bno, read)
        b.refcnt += 1
        try:
            yield b
        finally:
            b.refcnt -= 1

    def pin(self, b: Buf) -> None:
        b.pinned = True

    def unpin(self, b: Buf) -> None:
        b.pinned = False

    def discard(self, bno: int) -> None:
        """Forget block `bno` (its cached contents are not to be trusted any more)."""
        b = self._bufs.pop(bno, None)
        if b is not None:
            self._free.append(b.slot)

    def clear(self) -> None:
        self._bufs.clear()
        self._free = list(range(self.capacity - 1, -1, -1))

    def __len__(self) -> int:
        return len(self._bufs)
