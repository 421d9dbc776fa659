"""mkfs installs the user programs: /bin/NAME holds rv6/user/NAME.py, mode 0755, and /dev
exists; the image is clean for fsck; --no-programs leaves it empty."""

from __future__ import annotations

import json
import stat as st
import subprocess
import sys

from redleaf.rv6.fs.disk import FileDisk, MemDisk
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck, fsck_device
from redleaf.rv6.fs.mkfs import USER_DIR, install_programs, mkfs, mkfs_device, user_programs

from .conftest import Clock


def _read(fs, path):
    fd = fs.open(path)
    try:
        return fs.read(fd, 1 << 24)
    finally:
        fs.close(fd)


def test_mkfs_image_has_every_program_in_bin(tmp_path):
    img = tmp_path / "fs.img"
    info = mkfs(img, 16 << 20)
    progs = user_programs()
    assert "cat" in progs and "sh" in progs and "usertests" in progs
    assert info.programs == len(progs) == len(list(USER_DIR.glob("*.py")))
    assert fsck(img) == []
    with FileDisk(img) as d:
        fs = FileSystem(d, Clock())
        assert _read(fs, "/bin/cat") == (USER_DIR / "cat.py").read_bytes()
        names = {e.name for e in fs.readdir("/bin")} - {".", ".."}
        assert names == set(progs)
        s = fs.stat("/bin/sh")
        assert st.S_ISREG(s.st_mode) and st.S_IMODE(s.st_mode) == 0o755
        assert fs.stat("/dev").is_dir
        fs.unmount()


def test_no_programs_leaves_it_empty(tmp_path):
    img = tmp_path / "fs.img"
    info = mkfs(img, 8 << 20, programs=False)
    assert info.programs == 0
    with FileDisk(img) as d:
        fs = FileSystem(d, Clock())
        assert [e.name for e in fs.readdir("/")] == [".", ".."]
        fs.unmount()


def test_mkfs_device_installs_on_request_and_reinstall_replaces():
    d = MemDisk(4096)
    mkfs_device(d, inodes=256, now_ns=5, zeroed=True, programs=True)
    assert fsck_device(d).clean
    fs = FileSystem(d, Clock())
    fd = fs.open("/bin/echo", 0o1 | 0o1000)             # O_WRONLY | O_TRUNC: damage it
    fs.close(fd)
    assert _read(fs, "/bin/echo") == b""
    written = install_programs(fs)                       # /bin and /dev exist: no error
    assert "/bin/echo" in written and _read(fs, "/bin/echo") == (USER_DIR / "echo.py").read_bytes()
    fs.unmount()
    assert fsck_device(d).clean


def test_mkfs_command_installs_by_default_and_not_with_no_programs(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "mkfs", *args],
                              capture_output=True, text=True, timeout=120)
    r = run(str(tmp_path / "a.img"), "--size", "8M", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["programs"] == len(user_programs())
    r = run(str(tmp_path / "b.img"), "--size", "8M")
    assert r.returncode == 0 and "programs in /bin" in r.stdout
    r = run(str(tmp_path / "c.img"), "--size", "8M", "--no-programs", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["programs"] == 0
    assert fsck(tmp_path / "a.img") == [] and fsck(tmp_path / "c.img") == []
