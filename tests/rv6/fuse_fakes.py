"""A local stand-in for the fs domain, so the FUSE mount is tested before (and apart from) it.

`StandInFs` has the methods of `rv6.fs_interface.FileSystem`, implemented over the core
`FileSystem` on a `MemDisk`, with the interface's semantics: read/pread take a vector moved
in and hand it back (the handle passed in is dead afterwards, also when the call fails
with FsError, as a declared error gives up what was moved), write/pwrite borrow it, at
most MAX_IO bytes a call, stat tuples in STAT_FIELDS order, readdir in msgpack pages with
a cookie. `StandInHeap.alloc_vec` gives `StandInVec`s: numpy buffers with that liveness.

Run as a module it is a mount process over the stand-in (what tests start):
    python -m tests.rv6.fuse_fakes DIR [--blocks N] [--inodes N]
"""

from __future__ import annotations

import argparse
import errno
import sys
import threading
import time

import msgpack
import numpy as np

from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.mkfs import mkfs_device
from redleaf.rv6.fs_interface import MAX_IO, STAT_FIELDS, STATFS_FIELDS

PAGE = 32   # readdir entries a page: small, so directories of a test span several pages


class StandInVec:
    """An RRefVec's stand-in: `.np` views the buffer while the handle is alive."""

    def __init__(self, arr: np.ndarray):
        self._arr = arr
        self.alive = True

    @property
    def np(self) -> np.ndarray:
        if not self.alive:
            raise RuntimeError("use of a moved vector")
        return self._arr

    def __len__(self) -> int:
        return len(self._arr)

    @property
    def elem_type(self):
        return self._arr.dtype

    def take(self) -> np.ndarray:
        """Move: the handle dies, the buffer goes to the taker."""
        arr = self.np
        self.alive = False
        return arr


class StandInHeap:
    def __init__(self):
        self.allocs = 0

    def alloc_vec(self, dtype, n: int) -> StandInVec:
        self.allocs += 1
        return StandInVec(np.empty(n, dtype=dtype))


def _check_n(vec: StandInVec, n: int) -> None:
    if not 0 <= n <= min(len(vec), MAX_IO):
        raise FsError(errno.EINVAL, f"n={n} is more than the vector ({len(vec)}) or MAX_IO")


class StandInFs:
    """The FileSystem interface over the core FileSystem (one lock: calls are serial, as a
    domain serves them)."""

    def __init__(self, nblocks: int = 16384, inodes: int = 4096):
        disk = MemDisk(nblocks)
        mkfs_device(disk, inodes=inodes, now_ns=time.time_ns(), zeroed=True)
        self.core = FileSystem(disk, time.time_ns)
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def open(self, path: str, flags: int, mode: int) -> int:
        with self.lock:
            return self.core.open(path, flags, mode)

    def close(self, fd: int) -> None:
        with self.lock:
            self.core.close(fd)

    def _readinto(self, vec: StandInVec, n: int, fn) -> tuple[int, StandInVec]:
        _check_n(vec, n)
        arr = vec.take()           # moved in; on FsError it is not given back
        with self.lock:
            got = fn(memoryview(arr)[:n])
        return got, StandInVec(arr)

    def read(self, fd: int, buf: StandInVec, n: int) -> tuple[int, StandInVec]:
        self._count("read")
        return self._readinto(buf, n, lambda mv: self.core.readinto(fd, mv))

    def pread(self, fd: int, buf: StandInVec, n: int, offset: int) -> tuple[int, StandInVec]:
        self._count("pread")
        return self._readinto(buf, n, lambda mv: self.core.preadinto(fd, mv, offset))

    def write(self, fd: int, buf: StandInVec, n: int) -> int:
        self._count("write")
        _check_n(buf, n)
        with self.lock:
            return self.core.write(fd, buf.np[:n])

    def pwrite(self, fd: int, buf: StandInVec, n: int, offset: int) -> int:
        self._count("pwrite")
        _check_n(buf, n)
        with self.lock:
            return self.core.pwrite(fd, buf.np[:n], offset)

    def seek(self, fd: int, offset: int, whence: int) -> int:
        with self.lock:
            return self.core.seek(fd, offset, whence)

    def fstat(self, fd: int) -> tuple:
        with self.lock:
            s = self.core.fstat(fd)
        return tuple(getattr(s, f) for f in STAT_FIELDS)

    def stat(self, path: str) -> tuple:
        with self.lock:
            s = self.core.stat(path)
        return tuple(getattr(s, f) for f in STAT_FIELDS)

    def mkdir(self, path: str, mode: int) -> None:
        with self.lock:
            self.core.mkdir(path, mode)

    def mknod(self, path: str, mode: int, major: int, minor: int) -> None:
        with self.lock:
            self.core.mknod(path, mode, major, minor)

    def link(self, old: str, new: str) -> None:
        with self.lock:
            self.core.link(old, new)

    def unlink(self, path: str) -> None:
        with self.lock:
            self.core.unlink(path)

    def rmdir(self, path: str) -> None:
        with self.lock:
            self.core.rmdir(path)

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            self.core.rename(old, new)

    def readdir(self, path: str, cookie: int) -> tuple[bytes, int]:
        with self.lock:
            ents = self.core.readdir(path)
        page = ents[cookie:cookie + PAGE]
        nxt = cookie + PAGE if cookie + PAGE < len(ents) else 0
        return msgpack.packb([[e.name, e.ino, e.type] for e in page]), nxt

    def truncate(self, path: str, size: int) -> None:
        with self.lock:
            self.core.truncate(path, size)

    def ftruncate(self, fd: int, size: int) -> None:
        with self.lock:
            self.core.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        with self.lock:
            self.core.fsync(fd)

    def sync(self) -> None:
        with self.lock:
            self.core.sync()

    def statfs(self) -> tuple:
        with self.lock:
            s = self.core.statfs()
        return tuple(getattr(s, f) for f in STATFS_FIELDS)

    def chmod(self, path: str, mode: int) -> None:
        with self.lock:
            self.core.chmod(path, mode)

    def utimens(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        with self.lock:
            self.core.utimens(path, (atime_ns, mtime_ns))


def main(argv: list[str] | None = None) -> int:
    from redleaf.rv6.fuse_mount import serve

    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--blocks", type=int, default=16384)
    p.add_argument("--inodes", type=int, default=4096)
    p.add_argument("--name", help="ignored: what `redleaf mount` passes the real mount program")
    p.add_argument("--export", help="ignored, as --name")
    a = p.parse_args(argv)
    serve(StandInFs(a.blocks, a.inodes), StandInHeap(), a.dir, fsname="rv6:stand-in")
    return 0


if __name__ == "__main__":
    sys.exit(main())
