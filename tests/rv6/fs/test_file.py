"""The open-file layer: descriptors, access modes, and operations sized to the log."""

import errno
import os

import pytest

from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.file import (MAX_WRITE_PER_OP, TRUNC_BUDGET, WRITE_BLOCKS_PER_OP, FdTable,
                                 OpenFile, access)
from redleaf.rv6.fs.format import BSIZE, MAXOPBLOCKS, NDIRECT, NINDIRECT
from redleaf.rv6.fs.fs import FileSystem

from .conftest import Clock, new_disk


def test_the_per_op_arithmetic():
    # k blocks of data touch k + 1 file blocks unaligned, each maybe new with its bitmap
    # block, plus 4 index blocks with theirs, plus the inode
    assert 2 * (WRITE_BLOCKS_PER_OP + 1) + 8 + 1 <= MAXOPBLOCKS
    assert MAX_WRITE_PER_OP == WRITE_BLOCKS_PER_OP * BSIZE and WRITE_BLOCKS_PER_OP == 26
    assert TRUNC_BUDGET + 6 <= MAXOPBLOCKS


def test_access_modes_and_fd_table():
    assert access(os.O_RDONLY) == (True, False)
    assert access(os.O_WRONLY | os.O_CREAT) == (False, True)
    assert access(os.O_RDWR) == (True, True)
    with pytest.raises(FsError) as e:
        access(os.O_WRONLY | os.O_RDWR)
    assert e.value.errno == errno.EINVAL
    t = FdTable(2)
    f = OpenFile(None, True, False, False)
    assert (t.alloc(f), t.alloc(f)) == (0, 1)
    with pytest.raises(FsError) as e:
        t.alloc(f)
    assert e.value.errno == errno.EMFILE
    t.pop(0)
    assert t.alloc(f) == 0
    for bad in (5, -1, None, 1.0):
        with pytest.raises(FsError) as e:
            t.get(bad)
        assert e.value.errno == errno.EBADF


@pytest.mark.parametrize("start", [
    0, NDIRECT * BSIZE - 5000,                              # direct -> indirect
    (NDIRECT + NINDIRECT) * BSIZE - 7000,                   # indirect -> double-indirect
    (NDIRECT + 2 * NINDIRECT) * BSIZE - 9000,               # across two children
])
def test_every_op_of_a_large_write_and_its_truncate_stays_within_maxopblocks(start):
    d = new_disk(nblocks=8192, inodes=64)
    fs = FileSystem(d, Clock())
    log = fs.log
    peak = [0]
    orig = log.write

    def counting(buf):
        orig(buf)
        peak[0] = max(peak[0], len(log.blocks) - log._op_start)

    log.write = counting
    fd = fs.open("/f", os.O_CREAT | os.O_RDWR)
    data = os.urandom(5 * MAX_WRITE_PER_OP + 333)
    assert fs.pwrite(fd, data, start) == len(data)
    assert WRITE_BLOCKS_PER_OP < peak[0] <= MAXOPBLOCKS
    fs.fsync(fd)        # an empty transaction, so every block the truncate logs counts
    peak[0] = 0
    fs.ftruncate(fd, 1)
    assert 0 < peak[0] <= MAXOPBLOCKS
    assert fs.pread(fd, 2, 0) == (data[:1] if start == 0 else b"\0")
    fs.close(fd)
