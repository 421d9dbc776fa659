"""A 1 GiB-capable file on a sparse image file (no GiB of RAM or disk needed)."""

import errno
import os

import pytest

from redleaf.rv6.fs.disk import FileDisk
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.format import MAXFILE
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck
from redleaf.rv6.fs.mkfs import mkfs

from .conftest import Clock

GIB = 1 << 30


def test_sparse_write_at_1_gib_minus_4_kib_reads_back_and_frees(tmp_path):
    p = tmp_path / "big.img"
    mkfs(p, GIB + (64 << 20))
    tail = os.urandom(4096)
    chunk = os.urandom(1 << 20)
    with FileDisk(p) as d:
        fs = FileSystem(d, Clock())
        free = fs.statfs().f_bfree
        fd = fs.open("/huge", os.O_CREAT | os.O_RDWR)
        assert fs.pwrite(fd, tail, GIB - 4096) == 4096
        assert fs.pwrite(fd, chunk, GIB // 2) == len(chunk)    # 1 MiB in one call, mid-file
        assert fs.fstat(fd).st_size == GIB
        fs.fsync(fd)
        fs.unmount()
    assert os.stat(p).st_blocks * 512 < 64 << 20               # still sparse
    assert fsck(p) == []
    with FileDisk(p) as d:
        fs = FileSystem(d, Clock())
        fd = fs.open("/huge", os.O_RDWR)
        assert fs.pread(fd, 8192, GIB - 8192) == bytes(4096) + tail
        assert fs.pread(fd, len(chunk), GIB // 2) == chunk
        # the tail: 1 data block + the double-indirect + one child; the chunk: 256 data
        # blocks, whose file blocks 131072.. (the double-indirect range starts at 1039)
        # cross a 1024-entry child boundary, so two more children
        assert fs.fstat(fd).st_blocks * 512 == (1 + 2 + 256 + 2) * 4096
        with pytest.raises(FsError) as e:
            fs.pwrite(fd, b"xy", MAXFILE - 1)
        assert e.value.errno == errno.EFBIG
        fs.ftruncate(fd, 0)
        assert fs.statfs().f_bfree == free
        fs.close(fd)
        fs.unmount()
    assert fsck(p) == []
