"""The default manifest (what `make run` boots) serves Rv6's file system as `rv6fs` on
nvme0: the first boot formats the empty 64 MiB image, a file written and fsync'd is in the
image after `down`, and fsck finds it clean."""

from __future__ import annotations

import os

import numpy as np

from redleaf.rv6.fs.fsck import fsck
from redleaf.rv6.fs_interface import FileSystem


def test_the_default_instance_boots_rv6fs_on_an_empty_image(make_instance, tmp_path):
    inst = make_instance(None, cwd=str(tmp_path))
    inst.wait_state("rv6fs", "running", timeout=60)
    with inst.attach() as c:
        fs = c.lookup("rv6fs", FileSystem)
        assert fs.statfs()[2] > 15000                  # data blocks of a 64 MiB image
        fd = fs.open("/motd", os.O_CREAT | os.O_WRONLY, 0o644)
        v = c.heap.alloc_vec(np.uint8, 5)
        v.np[:] = np.frombuffer(b"hello", np.uint8)
        assert fs.write(fd, v, 5) == 5
        v.drop()
        fs.fsync(fd)
        fs.close(fd)
    image = tmp_path / "nvme0.img"
    assert image.stat().st_size == 64 << 20
    inst.stop()
    assert [p for p in fsck(image) if p.severity == "error"] == []
