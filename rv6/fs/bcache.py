"""The block cache (xv6's bio.c). It calls only the device (disk.py).

Every block the file system reads or changes lives in one `Buf` here, so two layers never
hold two different copies of a block. `block(bno)` lends a buffer for the span of a `with`
(its refcount keeps it in place); changes are made in `buf.data` and handed to the log,
which *pins* the buffer: a pinned buffer is never evicted, since its new contents exist
nowhere else until the transaction is installed. Eviction is LRU among buffers neither
lent nor pinned, so a clean buffer can always be dropped and read again.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from .disk import BlockDevice
from .format import BSIZE


class CacheExhausted(RuntimeError):
    """Every buffer is lent or pinned: a layer leaked a buffer or the cache is smaller than
    the log (a bug, not a user error)."""


class Buf:
    __slots__ = ("bno", "data", "refcnt", "pinned")

    def __init__(self, bno: int, data: bytes):
        self.bno = bno
        self.data = bytearray(data)
        self.refcnt = 0
        self.pinned = False


class BufCache:
    def __init__(self, dev: BlockDevice, capacity: int):
        self.dev = dev
        self.capacity = capacity
        self._bufs: OrderedDict[int, Buf] = OrderedDict()
        self.hits = self.misses = 0

    def _get(self, bno: int, read: bool) -> Buf:
        b = self._bufs.get(bno)
        if b is not None:
            self._bufs.move_to_end(bno)
            self.hits += 1
            return b
        self.misses += 1
        if len(self._bufs) >= self.capacity:
            self._evict()
        # a caller about to overwrite the whole block need not read it first
        b = Buf(bno, self.dev.read_block(bno) if read else bytes(BSIZE))
        self._bufs[bno] = b
        return b

    def _evict(self) -> None:
        for bno, b in self._bufs.items():
            if b.refcnt == 0 and not b.pinned:
                del self._bufs[bno]
                return
        raise CacheExhausted(f"all {self.capacity} cache buffers are in use or pinned")

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
        self._bufs.pop(bno, None)

    def clear(self) -> None:
        self._bufs.clear()

    def __len__(self) -> int:
        return len(self._bufs)
