"""The devices: in-memory (sparse, recording) and over an image file."""

import pytest

from redleaf.rv6.fs.disk import FileDisk, MemDisk
from redleaf.rv6.fs.errors import DiskError


def test_memdisk_is_sparse_records_and_rebuilds_crash_images():
    d = MemDisk(1 << 20, record=True)
    assert d.read_block(123456) == bytes(4096)
    base = d.start_recording()
    d.write_block(5, b"a" * 4096)
    d.flush()
    d.write_block(6, b"b" * 4096)
    d.write_block(5, b"c" * 4096)
    assert [e[0] for e in d.events] == ["w", "f", "w", "w"]
    assert len(d.blocks) == 2
    img = MemDisk.crash_image(base, d.events, 2)
    assert img == {5: b"a" * 4096}
    img = MemDisk.crash_image(base, d.events, 2, extra=[3])
    assert img == {5: b"c" * 4096}
    img = MemDisk.crash_image(base, d.events, 2, extra=[2])
    assert img == {5: b"a" * 4096, 6: b"b" * 4096}


@pytest.mark.parametrize("bno", [-1, 16])
def test_out_of_range_and_short_writes_are_disk_errors(bno):
    d = MemDisk(16)
    with pytest.raises(DiskError, match="outside the device"):
        d.read_block(bno)
    with pytest.raises(DiskError, match="4096 bytes"):
        d.write_block(0, b"x")


def test_filedisk_reads_writes_and_reads_zeros_in_holes(tmp_path):
    p = tmp_path / "img"
    p.write_bytes(b"")
    with open(p, "r+b") as f:
        f.truncate(64 * 4096)
    with FileDisk(p) as d:
        assert d.nblocks == 64
        d.write_block(10, b"z" * 4096)
        d.flush()
        assert d.read_block(10) == b"z" * 4096 and d.read_block(11) == bytes(4096)
    with FileDisk(p, readonly=True) as d:
        with pytest.raises(DiskError, match="read-only"):
            d.write_block(1, bytes(4096))
    with pytest.raises(DiskError, match="cannot open"):
        FileDisk(tmp_path / "missing")
