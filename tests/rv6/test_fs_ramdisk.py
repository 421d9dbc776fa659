"""Rv6's fs on the in-memory block-device domain (redleaf.drivers.ramdisk:RamDisk), which
exports `BDev` only: the fs formats the blank device, serves files one block a call,
and after a kill -9 of the fs domain replays its log from the RAM disk (which lives on)
with every fsync'd byte there. Bad block numbers on the RamDisk are its declared error."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from redleaf.drivers.bdev import BDev, Block, BlockError

from .test_fs_domain import Client

MANIFEST = """
[heap]
size = "64MiB"

[[domain]]
name = "ram0"
target = "redleaf.drivers.ramdisk:RamDisk"
restart = "permanent"
config = { size = "16MiB" }

[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
restart = "permanent"
max_restarts = 5
backoff_s = 0.01
uses = ["ram0"]
config = { bdev = "ram0", mkfs_if_blank = true, cache_mb = 1 }
"""


def _get_big(cl, size: int) -> bytes:
    fd = cl.fs.open("/big", os.O_RDONLY, 0)
    out = b"".join(cl.pread(fd, 1 << 20, off) for off in range(0, size, 1 << 20))
    cl.fs.close(fd)
    return out


def test_rv6fs_on_a_bdev_only_ram_disk_survives_its_own_kill(make_instance):
    inst = make_instance(MANIFEST)
    with open(inst.request("logs", name="rv6fs")["path"]) as f:
        assert "offers no NvmeBDev" in f.read()              # it said which path it took
    data = {f"/f{i}": np.random.default_rng(i).integers(0, 256, 9000 * (i + 1), dtype=np.uint8).tobytes()
            for i in range(6)}
    with inst.attach() as c:
        cl = Client(c)
        cl.fs.mkdir("/d", 0o755)
        for p, d in data.items():
            cl.put("/d" + p, d)
        big = os.urandom(3 << 20)                          # three times the cache: reads go to the device
        fd = cl.fs.open("/big", os.O_CREAT | os.O_WRONLY, 0o644)
        for off in range(0, len(big), 1 << 20):
            assert cl.pwrite(fd, big[off:off + (1 << 20)], off) == 1 << 20
        cl.fs.fsync(fd)
        cl.fs.close(fd)
        assert _get_big(cl, len(big)) == big
        st0 = inst.status()["rv6fs"]
        os.kill(st0["pid"], signal.SIGKILL)
        inst.wait_state("rv6fs", "running", pid_not=st0["pid"], timeout=30)
        for p, d in data.items():
            assert cl.get("/d" + p) == d
        assert _get_big(cl, len(big)) == big
        # the RamDisk's own bad input: declared errors, the domain unharmed
        ram = c.lookup("ram0", BDev)
        pid = inst.status()["ram0"]["pid"]
        with pytest.raises(BlockError):
            ram.read(1 << 40, c.heap.alloc(Block))
        buf = c.heap.alloc(Block)
        with pytest.raises(BlockError):
            ram.write(-1, buf)
        assert ram.info() == (4096, 4096)
        assert inst.status()["ram0"]["pid"] == pid and inst.status()["ram0"]["restarts"] == 0
