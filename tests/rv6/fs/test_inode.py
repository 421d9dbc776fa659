"""Inodes, the block map over its three regions, the allocator, shrinking in steps."""

import errno

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from redleaf.rv6.fs.errors import CorruptionError, FsError
from redleaf.rv6.fs.file import TRUNC_BUDGET
from redleaf.rv6.fs.format import BSIZE, DIND, IND, NDIRECT, NINDIRECT, T_FILE
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck_device

from .conftest import Clock, new_disk

# the first block of each region of the map
EDGES = [0, NDIRECT - 1, NDIRECT, NDIRECT + NINDIRECT - 1, NDIRECT + NINDIRECT,
         NDIRECT + NINDIRECT + NINDIRECT + 5]


def _file(fs):
    with fs.log.op():
        ip = fs.inodes.ialloc(T_FILE, 0o644, 1)
        ip.d.nlink = 1
        fs.inodes.iupdate(ip)
    return ip


def _write(fs, ip, off, data):
    with fs.log.op():
        return fs.inodes.writei(ip, off, data)


def test_block_map_regions_allocate_index_blocks_once(fs):
    ip = _file(fs)
    for bn in EDGES:
        assert _write(fs, ip, bn * BSIZE, bytes([bn % 251]) * 10) == 10
    assert ip.d.addrs[IND] and ip.d.addrs[DIND]
    # data blocks + the indirect + the double-indirect + two of its children
    assert ip.d.nblocks == len(EDGES) + 1 + 1 + 2
    for bn in EDGES:
        assert fs.inodes.readi(ip, bn * BSIZE, 10) == bytes([bn % 251]) * 10
    # a hole reads as zeros without allocating
    free = fs.inodes.free_blocks
    assert fs.inodes.readi(ip, 3 * BSIZE, 100) == bytes(100)
    assert fs.inodes.free_blocks == free


def test_bmap_past_the_largest_file_is_efbig(fs):
    ip = _file(fs)
    with pytest.raises(FsError) as e:
        fs.inodes.bmap(ip, NDIRECT + NINDIRECT + NINDIRECT * NINDIRECT, alloc=False)
    assert e.value.errno == errno.EFBIG


def test_balloc_until_full_is_enospc_and_free_counts_follow(clock):
    d = new_disk(nblocks=300, inodes=32)
    fs = FileSystem(d, clock)
    free = fs.inodes.free_blocks
    got = []
    with pytest.raises(FsError) as e:
        while True:
            with fs.log.op():
                got.append(fs.inodes.balloc())
    assert e.value.errno == errno.ENOSPC
    assert len(got) == free == len(set(got)) and fs.inodes.free_blocks == 0
    for b in got:
        with fs.log.op():
            fs.inodes.bfree(b)
    assert fs.inodes.free_blocks == free
    with pytest.raises(CorruptionError, match="free already"):
        with fs.log.op():
            fs.inodes.bfree(got[0])


def test_pointer_outside_the_data_area_is_corruption_not_a_metadata_write(fs):
    from redleaf.rv6.fs.format import Dinode, INODE_SIZE, inode_block, inode_offset
    ip = _file(fs)
    _write(fs, ip, NDIRECT * BSIZE, b"x")          # an indirect block
    fs.log.force()
    # an inode with a valid checksum whose pointer names the superblock
    bad = Dinode(type=T_FILE, nlink=1, size=BSIZE, nblocks=1)
    bad.addrs[0] = 1
    with fs.log.op(), fs.cache.block(inode_block(fs.sb, ip.inum + 1)) as b:
        o = inode_offset(ip.inum + 1)
        b.data[o:o + INODE_SIZE] = bad.pack()
        fs.log.write(b)
    with pytest.raises(CorruptionError, match="outside the data area"):
        fs.inodes.iget(ip.inum + 1)
    # an indirect block whose entry names the log
    with fs.log.op(), fs.cache.block(ip.d.addrs[IND]) as b:
        b.data[0:4] = (3).to_bytes(4, "little")
        fs.log.write(b)
    with pytest.raises(CorruptionError, match="outside the data area"):
        fs.inodes.bmap(ip, NDIRECT, alloc=True)
    with fs.log.op(), fs.cache.block(inode_block(fs.sb, ip.inum + 1)) as b:
        b.data[o:o + INODE_SIZE] = bytes(INODE_SIZE)
        fs.log.write(b)


def test_shrink_steps_free_everything_and_keep_the_invariants(clock):
    d = new_disk(nblocks=4096, inodes=64)
    fs = FileSystem(d, clock)
    free0 = fs.inodes.free_blocks
    ip = _file(fs)
    nblocks = NDIRECT + NINDIRECT + 300
    data = bytes(range(256)) * (nblocks * BSIZE // 256)
    off = 0
    while off < len(data):      # within the log's bound per op
        off += _write(fs, ip, off, memoryview(data)[off:off + 20 * BSIZE])
    fs.log.force()
    steps = 0
    target = 5 * BSIZE + 123
    while True:
        with fs.log.op():
            steps += 1
            done = fs.inodes.shrink_step(ip, target, TRUNC_BUDGET)
        # between steps the size steps down and no block is mapped past it
        assert ip.d.size >= target
        if done:
            break
    assert steps >= nblocks // TRUNC_BUDGET
    assert ip.d.size == target and ip.d.addrs[IND] == 0 and ip.d.addrs[DIND] == 0
    assert ip.d.nblocks == 6
    assert fs.inodes.readi(ip, 0, target) == data[:target]
    # growing again shows zeros past the old end, not the old bytes
    with fs.log.op():
        ip.d.size = 8 * BSIZE
        fs.inodes.iupdate(ip)
    assert fs.inodes.readi(ip, target, 2 * BSIZE) == bytes(2 * BSIZE)
    with fs.log.op():
        while not fs.inodes.shrink_step(ip, 0, TRUNC_BUDGET):
            pass
        fs.inodes.ifree(ip)
    assert fs.inodes.free_blocks == free0
    fs.unmount()
    rep = fsck_device(d)
    assert rep.clean, rep.problems


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(EDGES + [2, 40, 2000]), st.integers(1, 3 * BSIZE)),
                min_size=1, max_size=6),
       st.integers(0, (NDIRECT + NINDIRECT + 2000) * BSIZE))
def test_writes_then_any_shrink_match_a_bytearray_model_and_fsck(writes, target):
    d = new_disk(nblocks=4096, inodes=64)
    fs = FileSystem(d, Clock())
    ip = _file(fs)
    model = bytearray()
    for bn, n in writes:
        off = bn * BSIZE + 17
        payload = np.random.default_rng(bn + n).integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _write(fs, ip, off, payload) == n
        if len(model) < off + n:
            model.extend(bytes(off + n - len(model)))
        model[off:off + n] = payload
    assert fs.inodes.readi(ip, 0, len(model)) == bytes(model)
    if target < len(model):
        while True:
            with fs.log.op():
                if fs.inodes.shrink_step(ip, target, TRUNC_BUDGET):
                    break
        del model[target:]
    assert ip.d.size == len(model)
    assert fs.inodes.readi(ip, 0, len(model) + 10) == bytes(model)
    fs.unmount()
    rep = fsck_device(d)
    # the inode is unnamed (made below the directory layer): only that may be reported
    assert {p.kind for p in rep.errors} <= {"links"}, rep.problems


def test_ialloc_exhaustion_and_reuse(clock):
    d = new_disk(nblocks=300, inodes=32)
    fs = FileSystem(d, clock)
    made = []
    with pytest.raises(FsError) as e:
        while True:
            made.append(_file(fs))
    assert e.value.errno == errno.ENOSPC and len(made) == 30  # 0 unused, 1 the root
    with fs.log.op():
        fs.inodes.ifree(made[3])
    assert _file(fs).inum == made[3].inum


def _walk(fs, ip, bn):
    """The block map as xv6 walks it, one pointer at a time: the reference for bmap_span."""
    from redleaf.rv6.fs.format import NDIRECT as ND, NINDIRECT as NI

    def entry(index, i):
        with fs.cache.block(index) as b:
            return int(np.frombuffer(b.data, "<u4")[i])

    if bn < ND:
        return ip.d.addrs[bn]
    bn -= ND
    if bn < NI:
        return entry(ip.d.addrs[IND], bn) if ip.d.addrs[IND] else 0
    bn -= NI
    child = entry(ip.d.addrs[DIND], bn // NI) if ip.d.addrs[DIND] else 0
    return entry(child, bn % NI) if child else 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(EDGES + [3, NDIRECT + 7, NDIRECT + NINDIRECT + NINDIRECT + 1]), max_size=6),
       st.integers(0, NDIRECT + 2 * NINDIRECT + 10), st.integers(0, 2 * NINDIRECT + 40))
def test_bmap_span_equals_the_walk_one_block_at_a_time(written, start, count):
    """The vectorised map (a slice per region and index block) says what the pointer walk
    says for every block of any span, holes included, across all three regions."""
    fs = FileSystem(new_disk(nblocks=4096), Clock())
    ip = _file(fs)
    for bn in written:
        _write(fs, ip, bn * BSIZE, b"x")
    span = fs.inodes.bmap_span(ip, start, count)
    assert span == [_walk(fs, ip, b) for b in range(start, start + count)]
    assert all(fs.inodes.bmap(ip, b, alloc=False) == span[b - start] for b in range(start, min(start + count, start + 40)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3 * BSIZE), st.integers(0, 110 * BSIZE), st.integers(0, 3 * BSIZE), st.integers(81, 100))
def test_readinto_equals_the_bytes_written_for_any_span_and_cache_size(off, n, hole, cache):
    """Whole blocks go out in one gather, partial ends through a bounce row; a cache
    smaller than the read makes the gather read its misses in turns. Whatever the
    alignment and the pressure, the bytes are the file's (holes zeros)."""
    fs = FileSystem(new_disk(nblocks=4096, log_blocks=65), Clock(), cache_blocks=cache)
    ip = _file(fs)
    data = np.random.default_rng(n).integers(0, 256, 100 * BSIZE, dtype=np.uint8).tobytes()
    for k in range(0, len(data), 4 * BSIZE):
        _write(fs, ip, hole + k, data[k:k + 4 * BSIZE])
    model = bytes(hole) + data
    out = bytearray(n)
    got = fs.inodes.readinto(ip, off, memoryview(out))
    want = model[off:off + n]
    assert got == len(want) and bytes(out[:got]) == want
