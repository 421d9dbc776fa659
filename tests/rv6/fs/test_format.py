"""The on-disk layouts: round trips, the arithmetic of the file size, refused images."""

import struct

import pytest

from redleaf.rv6.fs import format as F
from redleaf.rv6.fs.errors import CorruptionError, NotRv6Error


def test_a_file_of_at_least_1_gib_maps_with_4k_blocks_and_4_byte_pointers():
    assert F.NINDIRECT == 4096 // 4 == 1024
    assert F.MAXFILE_BLOCKS == F.NDIRECT + 1024 + 1024 * 1024
    assert F.MAXFILE == F.MAXFILE_BLOCKS * 4096 >= 2**30
    # the last block of a 1 GiB file lies in the double-indirect range
    assert (2**30 // 4096 - 1) >= F.NDIRECT + F.NINDIRECT


def test_layout_sizes():
    assert F.INODE_SIZE == 128 and F.INODES_PER_BLOCK == 32
    assert F.DIRENT_SIZE == 64 and F.NAME_MAX >= 60
    assert F.MAX_LOG_BLOCKS - 1 <= (4096 - 16) // 4


def test_superblock_round_trip_and_geometry():
    sb = F.Superblock.geometry(10000, 300, 65)
    assert sb.ninodes == 320  # rounded up to whole inode blocks
    assert sb.logstart == 2 and sb.inodestart == 67 and sb.bmapstart == 67 + 10
    assert sb.datastart == sb.bmapstart + 1
    assert F.Superblock.unpack(sb.pack(), 10000) == sb


def test_foreign_image_and_other_version_are_refused_by_name():
    with pytest.raises(NotRv6Error, match="not an Rv6"):
        F.Superblock.unpack(bytes(4096), 100)
    raw = bytearray(F.Superblock.geometry(1000, 64, 65).pack())
    struct.pack_into("<I", raw, 8, 2)
    with pytest.raises(NotRv6Error, match="version 2"):
        F.Superblock.unpack(bytes(raw), 1000)


def test_damaged_or_truncated_superblock_is_corruption():
    sb = F.Superblock.geometry(1000, 64, 65)
    raw = bytearray(sb.pack())
    raw[20] ^= 1
    with pytest.raises(CorruptionError, match="checksum"):
        F.Superblock.unpack(bytes(raw), 1000)
    with pytest.raises(CorruptionError, match="truncated"):
        F.Superblock.unpack(sb.pack(), 999)


def test_inode_round_trip_checksum_and_free_inode():
    d = F.Dinode(type=F.T_FILE, nlink=3, mode=0o640, size=12345, atime=1, mtime=2, ctime=3)
    d.addrs[F.DIND] = 99
    raw = d.pack()
    assert len(raw) == 128 and F.Dinode.unpack(raw, 5) == d
    assert F.Dinode().pack() == F.FREE_INODE and F.Dinode.unpack(F.FREE_INODE, 5).type == F.T_FREE
    bad = bytearray(raw)
    bad[40] ^= 0x80
    with pytest.raises(CorruptionError, match="inode 5"):
        F.Dinode.unpack(bytes(bad), 5)


def test_log_header_round_trip_and_checks():
    sb = F.Superblock.geometry(1000, 64, 65)
    blocks = [sb.inodestart, sb.datastart + 3, 999]
    assert F.unpack_log_header(F.pack_log_header(blocks), sb) == blocks
    assert F.unpack_log_header(F.pack_log_header([]), sb) == []
    with pytest.raises(CorruptionError, match="outside"):
        F.unpack_log_header(F.pack_log_header([1]), sb)   # the superblock is never logged
    raw = bytearray(F.pack_log_header(blocks))
    raw[17] ^= 1
    with pytest.raises(CorruptionError, match="checksum"):
        F.unpack_log_header(bytes(raw), sb)
    with pytest.raises(CorruptionError, match="no log magic"):
        F.unpack_log_header(bytes(4096), sb)


def test_dirent_layout_holds_a_60_byte_name():
    import numpy as np
    name = b"x" * 60
    ent = np.frombuffer(F.pack_dirent(7, name), F.DIRENT)[0]
    assert int(ent["inum"]) == 7 and bytes(ent["name"]) == name
