"""`redleaf mkfs` and `redleaf fsck`: the supervisor's CLI runs Rv6's offline tools on an
image file (as subprocesses: the supervisor never imports rv6) and passes their output
and exit status through."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from redleaf.rv6.fs.disk import FileDisk
from redleaf.rv6.fs.format import Superblock


def redleaf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_mkfs_then_fsck_clean_then_corrupted(tmp_path):
    img = str(tmp_path / "fs.img")
    r = redleaf("mkfs", img, "--size", "8M", "--inodes", "256")
    assert r.returncode == 0, r.stderr
    assert "2048 blocks" in r.stdout and "256 inodes" in r.stdout
    assert os.path.getsize(img) == 8 << 20
    r = redleaf("fsck", img)
    assert r.returncode == 0 and "clean" in r.stdout, r.stdout + r.stderr
    r = redleaf("fsck", img, "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["clean"] and rep["problems"] == []
    # damage the bitmap: the root directory's block marked free, the last block marked used
    with FileDisk(img) as dev:
        sb = Superblock.unpack(dev.read_block(1), dev.nblocks)
        bm = bytearray(dev.read_block(sb.bmapstart))
        root = sb.datastart
        bm[root // 8] &= ~(1 << (root % 8)) & 0xFF
        bm[(sb.size - 1) // 8] |= 1 << ((sb.size - 1) % 8)
        dev.write_block(sb.bmapstart, bytes(bm))
        dev.flush()
    r = redleaf("fsck", img)
    assert r.returncode == 1
    lines = [ln for ln in r.stdout.splitlines() if "error:" in ln]
    assert len(lines) >= 2 and any("free in the bitmap" in ln for ln in lines), r.stdout
    r = redleaf("fsck", img, "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and not rep["clean"]
    assert {p["kind"] for p in rep["problems"]} >= {"bitmap"}


def test_fsck_of_a_missing_or_foreign_image_and_a_bad_mkfs_size(tmp_path):
    r = redleaf("fsck", str(tmp_path / "missing.img"))
    assert r.returncode == 2 and "missing.img" in r.stderr
    foreign = tmp_path / "zero.img"
    foreign.write_bytes(bytes(1 << 20))
    r = redleaf("fsck", str(foreign))          # no superblock: a problem fsck names
    assert r.returncode == 1 and "error:" in r.stdout, r.stdout
    r = redleaf("mkfs", str(tmp_path / "tiny.img"), "--size", "8K")
    assert r.returncode != 0 and r.stderr
    r = redleaf("mkfs", str(tmp_path / "x.img"), "--size", "lots")
    assert r.returncode != 0 and "not a size" in r.stderr
