"""Rv6's file-system domain on a real instance: emulated NVMe device, its driver behind a
shadow, and `rv6fs` (redleaf.rv6.fs_domain:FsDomain) on top, driven through a client
proxy of the `FileSystem` interface from this process.

Covers every interface method, the errors (FsError with the right errno), bad input
(the domain keeps running: same pid, no restart), a kill -9 of rv6fs (log replay, every
fsync'd byte back, in-flight calls fail with DomainCrashed), a kill -9 of the NVMe driver
under file I/O (the shadow hides it: no error reaches the client), mkfs of a blank image
and the refusal to format a foreign one; fsck of the image after the instance is down.
"""

from __future__ import annotations

import errno
import os
import signal
import stat as st
import threading

import msgpack
import numpy as np
import pytest

from redleaf.domains import DomainCrashed
from redleaf.drivers.nvme.manifests import nvme_manifest
from redleaf.rv6.fs.fsck import fsck
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs_interface import MAX_IO, STAT_FIELDS, STATFS_FIELDS, FileSystem

from tests.conftest import wait_busy

FS_DOMAIN = """
[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
restart = "permanent"
max_restarts = %d
period_s = 10.0
backoff_s = 0.01
uses = ["nvme0"]
config = { bdev = "nvme0", mkfs_if_blank = %s }
"""


def fs_manifest(image: str, mkfs_if_blank: bool = True, max_restarts: int = 20) -> str:
    return nvme_manifest(image, "16MiB", shadow=True) + FS_DOMAIN % (max_restarts, "true" if mkfs_if_blank else "false")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "nvme0.img"
    yield str(path)
    path.unlink(missing_ok=True)


class Client:
    """Byte-level helpers over the FileSystem proxy (vectors in the client's heap)."""

    def __init__(self, c):
        self.c = c
        self.fs = c.lookup("rv6fs", FileSystem)

    def vec(self, data: bytes):
        v = self.c.heap.alloc_vec(np.uint8, max(1, len(data)))
        v.np[:len(data)] = np.frombuffer(data, np.uint8)
        return v

    def write(self, fd: int, data: bytes) -> int:
        v = self.vec(data)
        try:
            return self.fs.write(fd, v, len(data))
        finally:
            v.drop()

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        v = self.vec(data)
        try:
            return self.fs.pwrite(fd, v, len(data), off)
        finally:
            v.drop()

    def read(self, fd: int, n: int) -> bytes:
        n_got, v = self.fs.read(fd, self.c.heap.alloc_vec(np.uint8, max(1, n)), n)
        data = bytes(v.np[:n_got])
        v.drop()
        return data

    def pread(self, fd: int, n: int, off: int) -> bytes:
        n_got, v = self.fs.pread(fd, self.c.heap.alloc_vec(np.uint8, max(1, n)), n, off)
        data = bytes(v.np[:n_got])
        v.drop()
        return data

    def listdir(self, path: str) -> tuple[list[list], int]:
        out, cookie, pages = [], 0, 0
        while True:
            page, cookie = self.fs.readdir(path, cookie)
            out += msgpack.unpackb(page)
            pages += 1
            if cookie == 0:
                return out, pages

    def put(self, path: str, data: bytes, sync: bool = True) -> None:
        fd = self.fs.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        assert self.write(fd, data) == len(data)
        if sync:
            self.fs.fsync(fd)
        self.fs.close(fd)

    def get(self, path: str) -> bytes:
        fd = self.fs.open(path, os.O_RDONLY, 0)
        size = self.fs.fstat(fd)[STAT_FIELDS.index("st_size")]
        data = self.read(fd, size)
        self.fs.close(fd)
        return data


def errno_of(fn, *args) -> int:
    with pytest.raises(FsError) as ei:
        fn(*args)
    return ei.value.errno


def check_clean(image: str) -> None:
    problems = [p for p in fsck(image) if p.severity == "error"]
    assert problems == [], problems


def test_every_call_through_the_domain(make_instance, image):
    inst = make_instance(fs_manifest(image))
    fs_pid = inst.status()["rv6fs"]["pid"]
    with inst.attach() as c:
        cl = Client(c)
        fs = cl.fs
        # open / write / read / seek / pread / pwrite / fstat
        fd = fs.open("/hello", os.O_CREAT | os.O_RDWR, 0o640)
        data = bytes(range(256)) * 40 + b"tail"
        assert cl.write(fd, data) == len(data)
        assert fs.seek(fd, 0, os.SEEK_SET) == 0
        assert cl.read(fd, 100) == data[:100]
        assert fs.seek(fd, 10, os.SEEK_CUR) == 110
        assert cl.read(fd, 10) == data[110:120]
        assert fs.seek(fd, -4, os.SEEK_END) == len(data) - 4
        assert cl.read(fd, 100) == b"tail"
        assert cl.pread(fd, 50, 4000) == data[4000:4050]
        assert cl.pwrite(fd, b"XYZ", 5) == 3
        assert cl.pread(fd, 10, 0) == data[:5] + b"XYZ" + data[8:10]
        s = dict(zip(STAT_FIELDS, fs.fstat(fd)))
        assert s["st_size"] == len(data) and st.S_ISREG(s["st_mode"]) and st.S_IMODE(s["st_mode"]) == 0o640
        # a large transfer is one call (MAX_IO)
        big = np.random.default_rng(1).integers(0, 256, MAX_IO, dtype=np.uint8).tobytes()
        assert cl.pwrite(fd, big, 1 << 20) == MAX_IO
        assert cl.pread(fd, MAX_IO, 1 << 20) == big
        fs.fsync(fd)
        fs.close(fd)
        assert dict(zip(STAT_FIELDS, fs.stat("/hello")))["st_size"] == 2 * MAX_IO
        # directories: mkdir, more than one page of readdir, rename, unlink, rmdir
        fs.mkdir("/d", 0o755)
        assert st.S_ISDIR(fs.stat("/d")[1])
        names = [f"file-with-a-longish-name-{i:04d}-".ljust(58, "x") for i in range(400)]
        for n in names:
            fd = fs.open(f"/d/{n}", os.O_CREAT | os.O_WRONLY, 0o600)
            fs.close(fd)
        entries, pages = cl.listdir("/d")
        assert pages > 1
        got = sorted(e[0] for e in entries)
        assert got == sorted(names + [".", ".."])
        assert all(e[2] == st.S_IFREG for e in entries if e[0] not in (".", ".."))
        fs.rename("/d/" + names[0], "/renamed")
        assert fs.stat("/renamed")[0] == [e[1] for e in entries if e[0] == names[0]][0]
        assert errno_of(fs.stat, "/d/" + names[0]) == errno.ENOENT
        assert errno_of(fs.rmdir, "/d") == errno.ENOTEMPTY
        for n in names[1:]:
            fs.unlink(f"/d/{n}")
        fs.rmdir("/d")
        assert errno_of(fs.stat, "/d") == errno.ENOENT
        # truncate, ftruncate, chmod, utimens, link, mknod, sync, statfs
        fs.truncate("/hello", 10)
        assert fs.stat("/hello")[5] == 10
        fd = fs.open("/hello", os.O_WRONLY, 0)
        fs.ftruncate(fd, 3)
        fs.close(fd)
        assert cl.get("/hello") == data[:3]
        fs.chmod("/hello", 0o600)
        assert st.S_IMODE(fs.stat("/hello")[1]) == 0o600
        fs.utimens("/hello", 1_000_000_000, 2_000_000_000)
        s = dict(zip(STAT_FIELDS, fs.stat("/hello")))
        assert (s["st_atime_ns"], s["st_mtime_ns"]) == (1_000_000_000, 2_000_000_000)
        fs.link("/hello", "/hello2")
        assert fs.stat("/hello")[2] == 2
        fs.mknod("/tty", st.S_IFCHR | 0o600, 4, 1)
        assert fs.stat("/tty")[11] == os.makedev(4, 1)
        fs.sync()
        sf = dict(zip(STATFS_FIELDS, fs.statfs()))
        assert sf["f_bsize"] == 4096 and 0 < sf["f_bfree"] < sf["f_blocks"] and sf["f_namemax"] > 0
        # errors, each with its errno
        assert errno_of(fs.open, "/nope", os.O_RDONLY, 0) == errno.ENOENT
        assert errno_of(fs.open, "/hello", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644) == errno.EEXIST
        assert errno_of(fs.mkdir, "/hello", 0o755) == errno.EEXIST
        assert errno_of(fs.close, 12345) == errno.EBADF
        fs.mkdir("/e", 0o755)
        assert errno_of(fs.open, "/e", os.O_WRONLY, 0) == errno.EISDIR
        assert errno_of(fs.unlink, "/e") == errno.EISDIR
        assert errno_of(fs.stat, "/" + "n" * 300) == errno.ENAMETOOLONG
        # bad input: answered, never a panic
        fd = fs.open("/hello", os.O_RDONLY, 0)
        v = c.heap.alloc_vec(np.uint8, 16)
        assert errno_of(fs.read, fd, v, 17) == errno.EINVAL            # n > len(buf)
        v = c.heap.alloc_vec(np.uint8, 16)
        assert errno_of(fs.pread, fd, v, 16, -1) == errno.EINVAL       # negative offset
        w = c.heap.alloc_vec(np.uint8, 16)
        assert errno_of(fs.write, fd, w, 32) == errno.EINVAL
        assert errno_of(fs.write, fd, w, 4) == errno.EBADF             # read-only descriptor
        assert errno_of(fs.pwrite, -5, w, 4, 0) == errno.EBADF
        w.drop()
        v = c.heap.alloc_vec(np.uint8, MAX_IO + 1)
        assert errno_of(fs.read, fd, v, MAX_IO + 1) == errno.EINVAL    # more than MAX_IO
        v = c.heap.alloc_vec(np.uint32, 4)
        assert errno_of(fs.read, fd, v, 4) == errno.EINVAL             # not a byte vector
        assert errno_of(fs.seek, fd, 0, 99) == errno.EINVAL
        for garbage in ("", "relative/path", "/a\0b", "/" + "a/" * 3000, "/hello/under-a-file", "//..//.."):
            with pytest.raises(FsError):
                fs.stat(garbage) if garbage != "//..//.." else fs.rmdir(garbage)
        assert errno_of(fs.readdir, "/hello", 0) == errno.ENOTDIR
        fs.close(fd)
        assert cl.get("/hello2") == data[:3]
    st_ = inst.status()["rv6fs"]
    assert st_["pid"] == fs_pid and st_["restarts"] == 0 and st_["state"] == "running"
    inst.stop()
    check_clean(image)


def test_kill_9_of_rv6fs_replays_the_log_and_keeps_every_fsynced_byte(make_instance, image):
    inst = make_instance(fs_manifest(image))
    rng = np.random.default_rng(7)
    synced = {f"/f{i}": rng.integers(0, 256, int(rng.integers(1, 200_000)), dtype=np.uint8).tobytes()
              for i in range(12)}
    with inst.attach() as c:
        cl = Client(c)
        cl.fs.mkdir("/dir", 0o755)
        for p, d in synced.items():
            cl.put(p if int(p[2:]) % 2 else "/dir" + p, d)
        # a file written but never synced: after the crash it holds some commit's state
        fd = cl.fs.open("/unsynced", os.O_CREAT | os.O_WRONLY, 0o644)
        cl.write(fd, b"u" * 50_000)
        st0 = inst.status()["rv6fs"]
        # a call in flight when the domain dies: a large write, killed once it is served
        errors: list = []
        v = cl.vec(b"w" * MAX_IO)

        def victim():
            try:
                cl.fs.write(fd, v, MAX_IO)
            except BaseException as e:  # reported to the main thread
                errors.append(e)
        t = threading.Thread(target=victim)
        t.start()
        wait_busy(c.heap.runtime_area(st0["id"]), "rv6fs")
        os.kill(st0["pid"], signal.SIGKILL)
        t.join(30)
        assert not t.is_alive()
        new = inst.wait_state("rv6fs", "running", pid_not=st0["pid"], timeout=30)
        assert new["restarts"] == 1
        # either the write finished before the kill landed, or the caller was told it crashed
        assert errors == [] or isinstance(errors[0], DomainCrashed), errors
        for p, d in synced.items():
            assert cl.get(p if int(p[2:]) % 2 else "/dir" + p) == d
        # the old descriptor died with its domain
        assert errno_of(cl.fs.close, fd) == errno.EBADF
        cl.put("/after", b"after the restart")
        assert cl.get("/after") == b"after the restart"
    inst.stop()
    check_clean(image)


def test_kill_9_of_the_nvme_driver_under_file_io_is_invisible(make_instance, image):
    """A writer thread writes and fsyncs files in a loop; three times the driver is
    killed while it serves one of the fs's block requests (its busy flag says so: rv6fs
    is its only client). The shadow restarts it and replays: no error reaches us."""
    inst = make_instance(fs_manifest(image))
    with inst.attach() as c:
        cl = Client(c)
        rng = np.random.default_rng(3)
        files: dict[str, bytes] = {}
        errors: list = []
        halt = threading.Event()

        def writer():
            i = 0
            try:
                while not halt.is_set():
                    data = rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes()
                    cl.put(f"/g{i % 40}", data)     # fsync: commits go through the driver
                    files[f"/g{i % 40}"] = data
                    i += 1
            except BaseException as e:  # reported to the main thread
                errors.append(e)
        t = threading.Thread(target=writer)
        t.start()
        try:
            for _ in range(3):
                drv = inst.status()["nvme0.driver"]
                wait_busy(c.heap.runtime_area(drv["id"]), "the driver")
                os.kill(drv["pid"], signal.SIGKILL)
                inst.wait_state("nvme0.driver", "running", pid_not=drv["pid"], timeout=30)
        finally:
            halt.set()
            t.join(60)
        assert not t.is_alive() and errors == [], errors
        assert len(files) > 0
        for p, d in files.items():
            assert cl.get(p) == d
    st_ = inst.status()
    assert st_["rv6fs"]["restarts"] == 0 and st_["nvme0"]["restarts"] == 0
    assert st_["nvme0.driver"]["restarts"] >= 3
    inst.stop()
    check_clean(image)


def test_remount_finds_the_files_and_a_foreign_image_is_never_formatted(make_instance, image):
    inst = make_instance(fs_manifest(image))
    with inst.attach() as c:
        Client(c).put("/kept", b"across boots")
    inst.stop()
    inst = make_instance(fs_manifest(image, mkfs_if_blank=False))
    with inst.attach() as c:
        assert Client(c).get("/kept") == b"across boots"
    inst.stop()
    check_clean(image)


def test_a_foreign_image_fails_the_start_and_is_left_alone(make_instance, image, tmp_path):
    foreign = b"\x55\xaa" * 2048
    with open(image, "wb") as f:
        f.truncate(16 << 20)
        f.seek(1024)                        # where ext2/3/4 keep their superblock
        f.write(foreign)
    inst = make_instance(fs_manifest(image, max_restarts=1))
    failed = inst.wait_state("rv6fs", "failed", timeout=30)
    assert "not blank" in failed["reason"] or "not blank" in inst.output(), (failed, inst.output())
    inst.stop()
    with open(image, "rb") as f:
        f.seek(1024)
        assert f.read(len(foreign)) == foreign
        f.seek(5120)
        assert f.read(4096) == bytes(4096)  # no rv6 superblock (block 1) was written


def test_readdir_of_a_name_that_is_not_utf8_is_a_clear_error_not_a_panic():
    """Found by the fscalls fuzzer (crashtest/fuzz/fscalls.py): an entry whose name is not
    UTF-8 (a damaged block, or bytes another tool wrote) made readdir raise
    UnicodeEncodeError, an undeclared exception: the fs domain panicked, and after its
    restart panicked again on the same directory."""
    from redleaf.rv6.fs.disk import MemDisk
    from redleaf.rv6.fs.fs import FileSystem as CoreFs
    from redleaf.rv6.fs.mkfs import mkfs_device
    from redleaf.rv6.fs_domain import FsDomain

    disk = MemDisk(1024)
    mkfs_device(disk, inodes=64, log_blocks=65, now_ns=1, zeroed=True)
    dom = FsDomain.__new__(FsDomain)            # the domain's methods, without a process
    dom.fs = CoreFs(disk, lambda: 1)
    dom.fs.mkdir(b"/ok")
    dom.fs.mkdir(b"/\xff")
    with pytest.raises(FsError, match="not a UTF-8 name") as e:
        dom.readdir("/", 0)
    assert e.value.errno == errno.EIO
    assert dom.readdir("/ok", 0)[1] == 0        # the other directories still list


OTHER_CLIENT = """
import errno, sys
from redleaf.domains import attach
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs_interface import FileSystem
with attach(sys.argv[1]) as c:
    fs = c.lookup("rv6fs", FileSystem)
    fd = int(sys.argv[2])
    for what, fn in (("fstat", lambda: fs.fstat(fd)), ("seek", lambda: fs.seek(fd, 0, 0)),
                     ("fsync", lambda: fs.fsync(fd)), ("close", lambda: fs.close(fd))):
        try:
            fn()
            print(what, "ok")
        except FsError as e:
            print(what, errno.errorcode[e.errno])
"""


def test_a_descriptor_belongs_to_the_client_that_opened_it(make_instance, image):
    """Descriptors are small numbers in the fs's one table: another client (or a new
    client after an fs restart) must not reach a file through a number it guessed."""
    import subprocess
    import sys

    inst = make_instance(fs_manifest(image))
    with inst.attach() as a:
        ca = Client(a)
        ca.put("/secret", b"only for a")
        fd = ca.fs.open("/secret", os.O_RDWR, 0)
        out = subprocess.run([sys.executable, "-c", OTHER_CLIENT, inst.name, str(fd)], capture_output=True,
                             text=True, timeout=60)
        assert out.stdout.split("\n")[:4] == ["fstat EBADF", "seek EBADF", "fsync EBADF", "close EBADF"], \
            out.stdout + out.stderr
        assert ca.read(fd, 100) == b"only for a"  # still a's, untouched
        ca.fs.close(fd)
        fd = ca.fs.open("/secret", os.O_RDONLY, 0)
    with inst.attach() as b:  # a new client, perhaps under a's domain id: a's descriptor is not its
        cb = Client(b)
        assert errno_of(cb.fs.fstat, fd) == errno.EBADF
        assert cb.get("/secret") == b"only for a"
