"""Fuzz target `fscalls`: random sequences of hostile calls to Rv6's fs domain.

Each input is a fresh small file system (in memory: rv6/fs over a MemDisk, 64 inodes,
4 MiB, so ENOSPC and EMFILE come up) served by the fs domain's own methods
(rv6/fs_domain.py FsDomain, built around it without a process: its argument checks
and its calls into the core are the code under test), and 1..MAX_CALLS calls of its
FileSystem interface with arguments drawn to hurt: paths relative, empty, with NUL,
"..", "//", trailing "/", names of 60 and 61 bytes, over PATH_MAX, a lone surrogate (which
cannot cross msgpack, but makes here the non-UTF-8 names a damaged image can hold); file
descriptors closed, negative, huge; offsets, sizes and counts at 0, around a block,
past the largest file and at 2**63 - 1; every open flag combination; modes and
whence values out of range; renames of a directory into itself; links to directories.
Every call must return or raise FsError (the declared error): anything else escaping
would panic the domain, and counts as a crash.  After the sequence the fs is
unmounted and fsck must find it clean: no sequence of calls through the interface
may corrupt the file system.  An input is *refused* if any call got an FsError, else
*accepted*.

May call: rv6 (fs_domain, fs).
"""

from __future__ import annotations

import errno
import itertools
import os
import random

import numpy as np

from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.format import MAXFILE
from redleaf.rv6.fs.fs import FileSystem as CoreFs
from redleaf.rv6.fs.fsck import fsck_device
from redleaf.rv6.fs.mkfs import mkfs_device
from redleaf.rv6.fs_domain import MAX_OFF, FsDomain

from .fsimage import HANG_S, Hang, bounded
from .tally import Tally

MAX_CALLS = 40
NBLOCKS = 1024

_PATHS = ["/", "/a", "/a/b", "/a/b/c", "/c", "/a/f", "/f", "/g", "/a/", "/f/", "//a", "/a/../c", "/a/./b",
          "/a/b/../../f", "/..", "/.", "/a/b/c/d/e", "/" + "x" * 60, "/" + "x" * 61, "/" + "é" * 30,
          "/a\0b", "a", "", "/" + "a/" * 2100, "/\udcff", "/a/b/../b/./c/", "/f/x"]
_INTS = [0, 1, 2, 4095, 4096, 4097, 65536, 1 << 20, MAXFILE - 1, MAXFILE, MAXFILE + 1, MAX_OFF, -1, -(1 << 63)]
_FLAGS = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_CREAT | os.O_RDWR, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
          os.O_TRUNC | os.O_RDWR, os.O_APPEND | os.O_WRONLY, os.O_DIRECTORY, os.O_CREAT | os.O_DIRECTORY,
          os.O_WRONLY | os.O_RDWR, 0xFFFFFFFF, 1 << 31]


class FakeVec:
    """What FsDomain needs of an RRefVec of uint8: elem_type, len, np."""

    def __init__(self, n: int, dtype=np.uint8):
        self.np = np.zeros(n, dtype=dtype)
        self.elem_type = dtype

    def __len__(self) -> int:
        return len(self.np)


class Clock:
    def __init__(self):
        self._c = itertools.count(1_700_000_000 * 10 ** 9, 1000)

    def __call__(self) -> int:
        return next(self._c)


class _OneClient:
    """What FsDomain asks of its runtime about the client it serves: one client, on one
    channel, never gone."""

    class serving:
        caller, chan_id = 2, 1

    @staticmethod
    def client_alive(chan_id: int) -> bool:
        return True


def new_domain() -> tuple[FsDomain, MemDisk]:
    disk = MemDisk(NBLOCKS)
    mkfs_device(disk, inodes=64, log_blocks=65, now_ns=1, zeroed=True)
    dom = FsDomain.__new__(FsDomain)          # the domain's methods over a core fs, no process
    fs = dom.fs = CoreFs(disk, Clock(), max_open=16)
    # every call comes from one client, alive throughout (descriptors are per client)
    dom.owners = {}
    dom.rt = _OneClient()
    # something to work on: the calls' paths name these
    fs.mkdir("/a")
    fs.mkdir("/a/b")
    for p, n in (("/f", 5000), ("/a/f", 70000), ("/g", 0)):
        fd = fs.open(p, os.O_CREAT | os.O_RDWR)
        fs.pwrite(fd, b"z" * n, 0)
        fs.close(fd)
    return dom, disk


def _path(rng: random.Random) -> str:
    return rng.choice(_PATHS)


def _int(rng: random.Random) -> int:
    return rng.choice(_INTS) if rng.random() < 0.7 else rng.randrange(-(1 << 63), 1 << 63)


def call(rng: random.Random, dom: FsDomain, fds: list[int]) -> str:
    """One call; returns its description.  Raises what the domain raises."""
    fd = rng.choice(fds + [-1, 0, 3, 1 << 40, 2 ** 63 - 1]) if fds and rng.random() < 0.8 else \
        rng.choice([-1, 0, 3, 1 << 40])
    k = rng.randrange(20)
    if k == 0:
        p, fl, mode = _path(rng), rng.choice(_FLAGS), rng.choice([0o644, 0, 0o7777, 0o10000, -1])
        fds.append(dom.open(p, fl, mode))
        return f"open({p!r}, {fl:#x}, {mode:o})"
    if k == 1:
        dom.close(fd)
        if fd in fds:
            fds.remove(fd)
        return f"close({fd})"
    if k in (2, 3):
        buf = FakeVec(rng.choice([0, 1, 4096, 70000]), rng.choice([np.uint8] * 5 + [np.uint32]))
        n = rng.choice([0, 1, len(buf), len(buf) + 1, 1 << 20, (1 << 20) + 1, -1])
        if k == 2:
            off = _int(rng)
            dom.pread(fd, buf, n, off)
            return f"pread({fd}, {len(buf)}, {n}, {off})"
        dom.read(fd, buf, n)
        return f"read({fd}, {len(buf)}, {n})"
    if k in (4, 5):
        buf = FakeVec(rng.choice([0, 1, 4096, 70000]))
        buf.np[:] = rng.randrange(256)
        n = rng.choice([0, 1, len(buf), len(buf) + 1, -1])
        if k == 4:
            off = _int(rng)
            dom.pwrite(fd, buf, n, off)
            return f"pwrite({fd}, {n}, {off})"
        dom.write(fd, buf, n)
        return f"write({fd}, {n})"
    if k == 6:
        off, wh = _int(rng), rng.choice([0, 1, 2, 3, 4, -1, 1 << 40])
        dom.seek(fd, off, wh)
        return f"seek({fd}, {off}, {wh})"
    if k == 7:
        dom.fstat(fd)
        return f"fstat({fd})"
    if k == 8:
        size = _int(rng)
        dom.ftruncate(fd, size)
        return f"ftruncate({fd}, {size})"
    if k == 9:
        dom.fsync(fd)
        return f"fsync({fd})"
    if k == 10:
        p = _path(rng)
        dom.stat(p)
        return f"stat({p!r})"
    if k == 11:
        p, mode = _path(rng), rng.choice([0o755, 0, 0o7777, 0o10000])
        dom.mkdir(p, mode)
        return f"mkdir({p!r})"
    if k == 12:
        p, mode = _path(rng), rng.choice([0o20644, 0o60600, 0o10644, 0o140777, 0o100644, 0o40755, 0, 0xFFFFFFFF])
        maj, mi = rng.choice([0, 1, 0xFFFF, 0x10000]), rng.choice([0, 7, 0x10000])
        dom.mknod(p, mode, maj, mi)
        return f"mknod({p!r}, {mode:o}, {maj}, {mi})"
    if k == 13:
        a, b = _path(rng), _path(rng)
        dom.link(a, b)
        return f"link({a!r}, {b!r})"
    if k == 14:
        p = _path(rng)
        (dom.unlink if rng.random() < 0.5 else dom.rmdir)(p)
        return f"unlink/rmdir({p!r})"
    if k == 15:
        a = _path(rng)
        b = rng.choice([_path(rng), a + "/x", a.rstrip("/") + "/b/c"])
        dom.rename(a, b)
        return f"rename({a!r}, {b!r})"
    if k == 16:
        p, cookie = _path(rng), rng.choice([0, 1, 64, 63, 4096, MAX_OFF, -1])
        dom.readdir(p, cookie)
        return f"readdir({p!r}, {cookie})"
    if k == 17:
        p, size = _path(rng), _int(rng)
        dom.truncate(p, size)
        return f"truncate({p!r}, {size})"
    if k == 18:
        p, mode = _path(rng), rng.choice([0o644, 0o7777, 0o10000, -1])
        dom.chmod(p, mode)
        return f"chmod({p!r}, {mode})"
    p, a, m = _path(rng), _int(rng), _int(rng)
    dom.utimens(p, a, m)
    return f"utimens({p!r}, {a}, {m})"


def one(rng: random.Random, tally: Tally) -> None:
    dom, disk = new_domain()
    fds: list[int] = []
    calls, refused = [], None
    try:
        with bounded(HANG_S):
            for _ in range(rng.randint(1, MAX_CALLS)):
                try:
                    calls.append(call(rng, dom, fds))
                except FsError as e:
                    calls.append(f"-> {errno.errorcode.get(e.errno, e.errno)}")
                    refused = refused or str(e)
            for f in list(fds):
                try:
                    dom.close(f)
                except FsError:
                    pass
            dom.fs.unmount()
    except Hang as e:
        tally.crash(f"hung: {e} after {calls[-6:]}")
        return
    except Exception as e:
        tally.crash(f"{type(e).__name__}: {e} after {calls[-6:]}")
        return
    rep = fsck_device(disk)
    if not rep.clean:
        tally.confuse(f"fsck after the calls: {[str(p) for p in rep.errors[:3]]} after {calls[-8:]}")
    elif refused:
        tally.refuse(refused[:300], "some call refused")
    else:
        tally.accept("all calls served")


def run(count: int, seed: int) -> dict:
    tally = Tally("fscalls", seed)
    rng = random.Random(seed)
    for _ in range(count):
        one(rng, tally)
    return tally.result()
