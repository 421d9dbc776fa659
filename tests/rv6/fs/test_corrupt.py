"""Bad input: fsck and mount on damaged images (random bytes in the superblock, the inode
table, a directory block, an indirect block, the bitmap, the log header) give a clear
error, a refused mount or a clean FsError on use; never another exception, never a hang
(pytest-timeout bounds every test)."""

import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from redleaf.rv6.fs.disk import FileDisk, MemDisk
from redleaf.rv6.fs.errors import CorruptionError, FsError, NotRv6Error
from redleaf.rv6.fs.format import NDIRECT, Superblock
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck, fsck_device

from .conftest import Clock, new_disk


def _populated():
    d = new_disk(nblocks=1024, inodes=64, log_blocks=65)
    fs = FileSystem(d, Clock())
    fs.mkdir("/d")
    fs.mkdir("/d/e")
    for i in range(5):
        fd = fs.open(f"/d/f{i}", os.O_CREAT | os.O_RDWR)
        fs.pwrite(fd, bytes([i]) * 3000, (NDIRECT + 2) * 4096 if i == 0 else 0)
        fs.close(fd)
    fs.link("/d/f1", "/d/e/g")
    fs.unmount()
    sb = Superblock.unpack(d.read_block(1), d.nblocks)
    f0 = FileSystem(MemDisk(d.nblocks, d.blocks), Clock())
    ip = f0.inodes.iget(f0.lookup("/d/f0"))
    regions = {
        "superblock": [1],
        "log header": [sb.logstart],
        "inode table": [sb.inodestart],
        "bitmap": [sb.bmapstart],
        "root directory": [sb.datastart],
        "subdirectory": [f0.inodes.bmap(f0.inodes.iget(f0.lookup("/d")), 0, False)],
        "indirect block": [ip.d.addrs[NDIRECT]],
    }
    return d, regions


DISK, REGIONS = _populated()


def _use(fs):
    """Walk everything and change something; only FsError may come out."""
    stack = ["/"]
    seen = set()        # a damaged entry may make a cycle (a directory naming its parent)
    while stack:
        d = stack.pop()
        try:
            entries = fs.readdir(d)
        except FsError:
            continue
        for e in entries:
            if e.name in (".", ".."):
                continue
            p = d.rstrip("/") + "/" + e.name
            try:
                s = fs.stat(p)
                if s.is_dir:
                    if s.st_ino not in seen and len(p) < 1000:
                        seen.add(s.st_ino)
                        stack.append(p)
                else:
                    fd = fs.open(p, os.O_RDWR)
                    fs.read(fd, 1 << 20)
                    fs.pwrite(fd, b"new", 5)
                    fs.ftruncate(fd, 1)
                    fs.close(fd)
                    fs.unlink(p)
            except FsError:
                pass
    for op in (lambda: fs.mkdir("/new"), lambda: fs.rename("/d", "/r"), fs.sync, fs.unmount):
        try:
            op()
        except FsError:
            pass


def _damage(region: str, seed: int, whole: bool):
    rng = random.Random(seed)
    blocks = dict(DISK.blocks)
    bno = rng.choice(REGIONS[region])
    raw = bytearray(blocks.get(bno, bytes(4096)))
    if whole:
        raw[:] = rng.randbytes(4096)
    else:
        # a few bytes where the structures are (the first few hundred bytes) or anywhere
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(256) if rng.random() < 0.7 else rng.randrange(4096)
            raw[i] = rng.randrange(256)
    blocks[bno] = bytes(raw)
    return blocks


@settings(max_examples=int(os.environ.get("RV6_CORRUPT_EXAMPLES", "60")), deadline=None)
@given(st.sampled_from(sorted(REGIONS)), st.integers(0, 2**32), st.booleans())
def test_damaged_images_give_clear_errors(region, seed, whole):
    blocks = _damage(region, seed, whole)
    rep = fsck_device(MemDisk(DISK.nblocks, blocks))
    assert all(p.message for p in rep.problems)
    try:
        fs = FileSystem(MemDisk(DISK.nblocks, blocks), Clock())
    except FsError as e:
        assert not rep.clean or isinstance(e, CorruptionError), e
        return
    _use(fs)


@pytest.mark.parametrize("region", ["superblock", "log header"])
def test_damaged_superblock_or_log_header_refuses_the_mount_and_fsck_says_so(region):
    blocks = dict(DISK.blocks)
    bno = REGIONS[region][0]
    raw = bytearray(blocks[bno])
    raw[9] ^= 0x40
    blocks[bno] = bytes(raw)
    with pytest.raises(FsError) as e:
        FileSystem(MemDisk(DISK.nblocks, blocks), Clock())
    assert isinstance(e.value, (CorruptionError, NotRv6Error))
    rep = fsck_device(MemDisk(DISK.nblocks, blocks))
    assert not rep.clean and rep.problems[0].kind == region.split()[0]


def test_a_foreign_image_is_not_ours():
    d = MemDisk(100, {1: b"\x53\xef" * 2048})
    with pytest.raises(NotRv6Error, match="not an Rv6"):
        FileSystem(d, Clock())
    assert fsck_device(d).problems[0].kind == "superblock"


@pytest.mark.parametrize("size", [0, 100, 4096, 4096 * 3 + 5, 64 * 4096])
def test_fsck_on_garbage_files_never_crashes(tmp_path, size):
    p = tmp_path / "garbage"
    p.write_bytes(random.Random(size).randbytes(size))
    probs = fsck(p)
    assert probs and probs[0].kind == "superblock"
    with FileDisk(p) as d, pytest.raises(FsError):
        FileSystem(d, Clock())


def test_a_damaged_inode_found_in_use_stops_the_fs_with_eio_until_remount():
    blocks = dict(DISK.blocks)
    sb = Superblock.unpack(blocks[1], DISK.nblocks)
    raw = bytearray(blocks[sb.inodestart])
    raw[2 * 128 + 40] ^= 0xFF          # inode 2 (/d), inside its fields
    blocks[sb.inodestart] = bytes(raw)
    fs = FileSystem(MemDisk(DISK.nblocks, blocks), Clock())
    assert fs.corrupt_inodes == [2]
    with pytest.raises(CorruptionError, match="inode 2"):
        fs.stat("/d")
    assert fs.stat("/").is_dir              # a read that found damage changed nothing


def _sealed_inode(blocks, inum, **fields):
    """Rewrite inode `inum`'s fields and its checksum, so the damage passes the CRC."""
    from redleaf.rv6.fs.format import INODE_SIZE, INODES_PER_BLOCK, Dinode
    sb = Superblock.unpack(blocks[1], DISK.nblocks)
    bno = sb.inodestart + inum // INODES_PER_BLOCK
    raw = bytearray(blocks.get(bno, bytes(4096)))
    off = (inum % INODES_PER_BLOCK) * INODE_SIZE
    d = Dinode.unpack(bytes(raw[off:off + INODE_SIZE]), inum)
    for k, v in fields.items():
        setattr(d, k, v)
    raw[off:off + INODE_SIZE] = d.pack()
    blocks[bno] = bytes(raw)


def test_an_orphan_whose_block_count_is_wrong_is_freed_at_mount():
    """Found by the fsimage fuzzer (crashtest/fuzz/fsimage.py): an unlinked inode counting
    a block it does not map made the mount's orphan reclaim fail an assertion."""
    blocks = dict(DISK.blocks)
    _sealed_inode(blocks, 40, type=2, nlink=0, nblocks=1)
    assert any(p.kind == "inode" for p in fsck_device(MemDisk(DISK.nblocks, blocks)).problems)
    fs = FileSystem(MemDisk(DISK.nblocks, blocks), Clock())
    assert fs.orphans_freed == 1
    fs.unmount()


def test_a_block_count_below_the_mapped_blocks_does_not_underflow():
    """Found by the fsimage fuzzer: freeing more blocks than an inode counted took the
    count below 0, and writing the inode back raised struct.error."""
    blocks = dict(DISK.blocks)
    f = FileSystem(MemDisk(DISK.nblocks, DISK.blocks), Clock())
    inum = f.lookup("/d/f0")
    f.unmount()
    _sealed_inode(blocks, inum, nblocks=0)
    fs = FileSystem(MemDisk(DISK.nblocks, blocks), Clock())
    fs.unlink("/d/f0")
    fs.unmount()
    assert fsck_device(MemDisk(DISK.nblocks, fs.dev.blocks)).clean
