"""The block cache: one buffer per block, LRU eviction, pinned buffers stay."""

import pytest

from redleaf.rv6.fs.bcache import BufCache, CacheExhausted
from redleaf.rv6.fs.disk import MemDisk


def test_one_buffer_per_block_and_lru_eviction():
    d = MemDisk(100)
    d.write_block(1, b"1" * 4096)
    c = BufCache(d, 3)
    with c.block(1) as a, c.block(1) as b:
        assert a is b and a.data[:1] == b"1"
    for n in (2, 3, 1, 4):          # 2 is least recently used when 4 comes in
        with c.block(n):
            pass
    assert len(c) == 3
    reads = d.reads
    with c.block(1):
        pass
    assert d.reads == reads         # still cached
    with c.block(2):
        pass
    assert d.reads == reads + 1     # was evicted


def test_pinned_and_lent_buffers_are_never_evicted():
    d = MemDisk(100)
    c = BufCache(d, 2)
    with c.block(1) as b1:
        b1.data[0] = 7
        c.pin(b1)
    with c.block(2) as b2:
        with pytest.raises(CacheExhausted):
            with c.block(3):
                pass
    with c.block(3):
        pass
    with c.block(1) as again:
        assert again.data[0] == 7     # the pinned change survived the pressure
    c.unpin(again)


def test_read_false_skips_the_device_read():
    d = MemDisk(10)
    c = BufCache(d, 4)
    with c.block(5, read=False) as b:
        assert b.data == bytearray(4096)
    assert d.reads == 0


def test_gather_equals_block_by_block_with_holes_misses_and_eviction():
    """gather: hits copied before any miss can reuse their rows, misses read in one batch
    per turn (the device's read_blocks), holes (block 0) zeros, a block named twice."""
    import numpy as np

    d = MemDisk(200)
    for b in range(1, 200):
        d.write_block(b, bytes([b % 251]) * 4096)
    c = BufCache(d, 8)
    with c.block(5):
        pass
    bnos = [5, 0, 7, 9, 9, 11, 13, 15, 17, 19, 21, 23, 5]   # more misses than rows
    out = np.empty((len(bnos), 4096), np.uint8)
    c.gather(bnos, out)
    for row, b in zip(out, bnos):
        assert (row == (b % 251 if b else 0)).all()
    assert len(c) <= 8
    with c.block(23) as b23:                        # the last turn stays cached
        assert b23.data[:1] == bytes([23])
