"""The FUSE mount on the real thing: the default instance's rv6fs domain on the NVMe
driver behind its shadow, Linux tools through `redleaf mount`, fsck clean after `down`."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .test_fuse_mount import _cleanup, _fuse_missing, _mounted

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_linux_tools_on_the_real_rv6fs_then_fsck(make_instance, tmp_path):
    why = _fuse_missing()
    if why:
        pytest.skip(why)
    inst = make_instance(None, cwd=str(tmp_path))            # default manifest: rv6fs on nvme0
    assert inst.status()["rv6fs"]["state"] == "running"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    pid = None
    try:
        r = _cli("--name", inst.name, "mount", str(mnt))
        assert r.returncode == 0, r.stderr
        pid = int(r.stdout.split("(pid ")[1].split(",")[0])
        subprocess.run(["cp", "-r", str(ROOT / "domains"), str(mnt / "domains")], check=True)
        assert subprocess.run(["diff", "-r", "-x", "__pycache__", str(ROOT / "domains"), str(mnt / "domains")]).returncode == 0
        data = os.urandom(3 << 20)
        (mnt / "blob").write_bytes(data)
        assert hashlib.md5((mnt / "blob").read_bytes()).digest() == hashlib.md5(data).digest()
        os.rename(mnt / "blob", mnt / "domains" / "moved")
        assert sorted(os.listdir(mnt)) == ["bin", "dev", "domains", "tmp"]    # /bin and /dev from mkfs_if_blank, /tmp from the kernel
        st = os.statvfs(mnt)
        assert st.f_bsize == 4096 and 0 < st.f_bfree < st.f_blocks
        r = _cli("umount", str(mnt))
        assert r.returncode == 0, r.stderr
        assert not _mounted(mnt)
    finally:
        _cleanup(mnt, None)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    inst.stop()
    r = _cli("fsck", str(tmp_path / "nvme0.img"))
    assert r.returncode == 0 and "clean" in r.stdout, r.stdout + r.stderr
