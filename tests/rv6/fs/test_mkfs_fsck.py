"""mkfs and fsck as library functions and commands; fsck finds each kind of damage."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from redleaf.rv6.fs.disk import FileDisk, MemDisk
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.format import (BPB, INODE_SIZE, Dinode, Superblock, inode_block,
                                   inode_offset, pack_dirent, pack_log_header)
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck, fsck_device
from redleaf.rv6.fs.mkfs import mkfs, parse_size

from .conftest import Clock, new_disk


def _run(mod, *args):
    return subprocess.run([sys.executable, "-m", f"redleaf.rv6.fs.{mod}", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_mkfs_makes_a_sparse_clean_image_that_mounts(tmp_path):
    p = tmp_path / "fs.img"
    info = mkfs(p, 64 << 20, inodes=1000)
    assert info.size_blocks == 16384 and info.inodes == 1024 and info.log_blocks == 193
    assert os.path.getsize(p) == 64 << 20
    assert os.stat(p).st_blocks * 512 < 2 << 20          # only the metadata is written
    assert fsck(p) == []
    with FileDisk(p) as d:
        fs = FileSystem(d, Clock())
        assert fs.statfs().f_blocks == info.data_blocks
        fs.mkdir("/x")
        fs.unmount()
    assert fsck(p) == []
    # remaking wipes it: a new tree, with the user programs (the default)
    mkfs(p, 64 << 20)
    with FileDisk(p) as d:
        assert [e.name for e in FileSystem(d, Clock()).readdir("/")] == [".", "..", "bin", "dev"]


def test_mkfs_refuses_sizes_that_cannot_hold_a_fs(tmp_path):
    with pytest.raises(FsError, match="cannot hold"):
        mkfs(tmp_path / "tiny", 40 * 4096)
    assert not (tmp_path / "tiny").exists()
    with pytest.raises(FsError, match="log-blocks"):
        mkfs(tmp_path / "x", 8 << 20, log_blocks=10)
    assert parse_size("64M") == 64 << 20 and parse_size("1G") == 1 << 30 and parse_size("4096") == 4096


def test_the_commands(tmp_path):
    p = tmp_path / "c.img"
    r = _run("mkfs", p, "--size", "16M", "--inodes", "128", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["inodes"] == 128
    r = _run("fsck", p, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["clean"] is True
    with open(p, "r+b") as f:
        f.seek(4096 + 20)
        f.write(b"\xff")
    r = _run("fsck", p)
    assert r.returncode == 1 and "superblock" in r.stdout
    r = _run("fsck", tmp_path / "missing")
    assert r.returncode == 2 and "cannot open" in r.stderr
    r = _run("mkfs", tmp_path / "t", "--size", "1K")
    assert r.returncode == 1 and "cannot hold" in r.stderr


# --- fsck finds what it claims to -----------------------------------------------------------

@pytest.fixture
def img():
    d = new_disk(nblocks=1024, inodes=64, log_blocks=65)
    fs = FileSystem(d, Clock())
    fs.mkdir("/d")
    for name in ("a", "b"):
        fd = fs.open(f"/d/{name}", os.O_CREAT | os.O_RDWR)
        fs.write(fd, b"x" * 9000)
        fs.close(fd)
    fs.unmount()
    assert fsck_device(d).problems == []
    return d


def _inode(d, inum):
    sb = Superblock.unpack(d.read_block(1), d.nblocks)
    raw = d.read_block(inode_block(sb, inum))
    return sb, Dinode.unpack(raw[inode_offset(inum):inode_offset(inum) + INODE_SIZE], inum)


def _put_inode(d, sb, inum, dino):
    b = bytearray(d.read_block(inode_block(sb, inum)))
    b[inode_offset(inum):inode_offset(inum) + INODE_SIZE] = dino.pack()
    d.write_block(inode_block(sb, inum), bytes(b))


def _kinds(d):
    return {(p.kind, p.severity) for p in fsck_device(d).problems}


def _find(d, path):
    fs = FileSystem(MemDisk(d.nblocks, d.blocks), Clock())
    return fs.lookup(path)


def test_fsck_finds_a_block_mapped_twice(img):
    a, b = _find(img, "/d/a"), _find(img, "/d/b")
    sb, da = _inode(img, a)
    _, db = _inode(img, b)
    db.addrs[1] = da.addrs[0]
    _put_inode(img, sb, b, db)
    assert ("block", "error") in _kinds(img) and ("bitmap", "error") in _kinds(img)


def test_fsck_finds_bitmap_mismatches(img):
    sb, da = _inode(img, _find(img, "/d/a"))
    bm = bytearray(img.read_block(sb.bmapstart))
    bno = da.addrs[0]
    bm[bno // 8] &= ~(1 << (bno % 8)) & 0xFF          # in use but free
    bm[(sb.size - 1) // 8] |= 1 << ((sb.size - 1) % 8)  # free but in use
    img.write_block(sb.bmapstart, bytes(bm))
    msgs = [p.message for p in fsck_device(img).problems]
    assert any("free in the bitmap" in m for m in msgs)
    assert any("no inode maps it" in m for m in msgs)


def test_fsck_finds_wrong_link_counts_and_entries_to_free_inodes(img):
    a = _find(img, "/d/a")
    sb, da = _inode(img, a)
    da.nlink = 3
    _put_inode(img, sb, a, da)
    assert ("links", "error") in _kinds(img)
    d = _find(img, "/d")
    _, dd = _inode(img, d)
    blk = bytearray(img.read_block(dd.addrs[0]))
    blk[4 * 64:5 * 64] = pack_dirent(40, b"ghost")
    dd.size = 5 * 64
    _put_inode(img, sb, d, dd)
    img.write_block(dd.addrs[0], bytes(blk))
    assert any("free inode 40" in p.message for p in fsck_device(img).problems)


def test_fsck_finds_bad_dot_and_dotdot(img):
    d = _find(img, "/d")
    sb, dd = _inode(img, d)
    blk = bytearray(img.read_block(dd.addrs[0]))
    blk[64:128] = pack_dirent(d, b"..")            # ".." names itself
    img.write_block(dd.addrs[0], bytes(blk))
    msgs = [p.message for p in fsck_device(img).problems]
    assert any("'..' is" in m for m in msgs)


def test_fsck_finds_blocks_past_the_size_and_miscounted_blocks(img):
    a = _find(img, "/d/a")
    sb, da = _inode(img, a)
    da.size = 10
    _put_inode(img, sb, a, da)
    assert any("past its end" in p.message for p in fsck_device(img).problems)
    da.size, da.nblocks = 9000, 7
    _put_inode(img, sb, a, da)
    assert any("counts 7 blocks but maps 3" in p.message for p in fsck_device(img).problems)


def test_fsck_reports_an_orphan_as_a_warning_and_mount_frees_it(img):
    a = _find(img, "/d/a")
    sb, da = _inode(img, a)
    d = _find(img, "/d")
    _, dd = _inode(img, d)
    blk = bytearray(img.read_block(dd.addrs[0]))
    names = np.frombuffer(bytes(blk), [("inum", "<u4"), ("name", "S60")])
    i = int(np.flatnonzero(names["inum"] == a)[0])
    blk[i * 64:(i + 1) * 64] = bytes(64)
    img.write_block(dd.addrs[0], bytes(blk))
    da.nlink = 0
    _put_inode(img, sb, a, da)
    rep = fsck_device(img)
    assert rep.clean and [p.kind for p in rep.problems] == ["orphan"]
    fs = FileSystem(img, Clock())
    assert fs.orphans_freed == 1
    fs.unmount()
    assert fsck_device(img).problems == []


def test_fsck_replays_a_committed_log_in_a_copy_and_reports_a_damaged_one(img):
    sb = Superblock.unpack(img.read_block(1), img.nblocks)
    # a committed transaction that makes /d/b's link count wrong, not yet installed
    b = _find(img, "/d/b")
    _, db = _inode(img, b)
    db.nlink = 5
    blk = bytearray(img.read_block(inode_block(sb, b)))
    blk[inode_offset(b):inode_offset(b) + INODE_SIZE] = db.pack()
    img.write_block(sb.logstart + 1, bytes(blk))
    img.write_block(sb.logstart, pack_log_header([inode_block(sb, b)], [bytes(blk)]))
    before = dict(img.blocks)
    rep = fsck_device(img)
    assert rep.log_replayed == 1 and ("links", "error") in {(p.kind, p.severity) for p in rep.problems}
    assert img.blocks == before                        # fsck never writes
    # a damaged log block: its checksum in the header no longer matches
    img.write_block(sb.logstart + 1, bytes(4096))
    assert fsck_device(img).problems[0].kind == "log"
    with pytest.raises(FsError, match="damaged log"):
        FileSystem(MemDisk(img.nblocks, img.blocks), Clock())
    bad = bytearray(img.read_block(sb.logstart))
    bad[8] ^= 1
    img.write_block(sb.logstart, bytes(bad))
    assert fsck_device(img).problems[0].kind == "log"
