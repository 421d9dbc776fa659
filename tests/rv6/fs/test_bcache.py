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
