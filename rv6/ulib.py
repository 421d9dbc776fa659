"""Rv6's user library: what a user program imports to reach the system.

Owns: the user API contract (shared with /bin's programs): the system-call wrappers,
the constants, `Stat`, `Rv6Error`, and the printf-like helpers. Calls only its bound
`Rv6Sys` proxy (rv6/kernel_interface.py); the user host (rv6/user_host.py) binds it to
the program's one capability before `main(argv)` runs.

A user program is a Python source file with `def main(argv: list[str]) -> int`; it does
all its I/O through this module (never open/print/os). Every call raises `Rv6Error`
(an OSError: `.errno` is a POSIX errno) on failure, an argument of the wrong type
included (EINVAL; data to write that is not bytes: EFAULT, a C program's bad buffer).

Blocking: the kernel never waits (it serves every process on one thread). When its
answer is "not yet" (an empty pipe, a full console, a child still running) the call
here sleeps until the kernel rings this program's doorbell (it does when that may have
changed) and asks again; the sleeps time out (from 1 ms growing to 500 ms) as a
backstop. Bound without a doorbell (a test's own process), it polls with sleeps from
50 us to 5 ms. `read` returns what is there (at most n bytes, and at most MAX_IO a call; b"" at
EOF; the data crosses in this process's I/O vector in the exchange heap, moved to the kernel
and back); `write` writes everything (in pieces when needed) and returns the count.
`readline` reads byte by byte: no buffering inside ulib, so a descriptor shared with a
child never loses bytes to a buffer the child cannot see.
"""

from __future__ import annotations

import errno
import os
import time
from typing import NamedTuple

import msgpack
import numpy as np

from redleaf.domains.errors import BadArgument

from .kernel.errors import Rv6Error
from .kernel_interface import (MAX_IO, MAX_RW, O_APPEND, O_CREATE, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, SEEK_CUR,
                               SEEK_END, SEEK_SET, T_DEV, T_DIR, T_FILE, T_PIPE)

__all__ = [
    "Rv6Error", "Stat", "O_RDONLY", "O_WRONLY", "O_RDWR", "O_CREATE", "O_TRUNC", "O_APPEND", "O_EXCL",
    "T_DIR", "T_FILE", "T_DEV", "T_PIPE", "SEEK_SET", "SEEK_CUR", "SEEK_END", "MAX_RW", "MAX_IO",
    "spawn", "exit", "wait", "kill", "getpid", "getppid", "sleep", "uptime",
    "open", "read", "write", "close", "dup", "dup2", "pipe", "fstat", "stat", "lseek", "link", "unlink",
    "mkdir", "rmdir", "rename", "mknod", "chdir", "getcwd", "readdir",
    "printf", "fprintf", "puts", "read_all", "readline", "write_all",
]

_BACKOFF_MIN_S = 50e-6
_BACKOFF_MAX_S = 5e-3
_DOZE_MIN_S = 1e-3
_DOZE_MAX_S = 0.5

_sys = None  # the Rv6Sys proxy
_heap_of = None  # the heap the proxy's process maps (its I/O vector lives there)
_buf = None  # this process's I/O vector (_vec)
_doze = None  # sleep until the kernel rings us, or a timeout: (seconds) -> None


def _default_exit(status: int):
    raise SystemExit(status)


#: what exit() does after the kernel recorded the status (the user host ends the
#: process; a test that binds ulib in its own process keeps the default)
_after_exit = _default_exit


class _Checked:
    """The proxy, with an argument it refuses (a wrong type: the bad pointer of a C
    program) raised as Rv6Error EINVAL, so every failure of a call is an Rv6Error."""

    def __init__(self, proxy):
        self._proxy = proxy

    def __getattr__(self, name):
        fn = getattr(self._proxy, name)

        def call(*args):
            try:
                return fn(*args)
            except BadArgument as e:
                raise Rv6Error(errno.EINVAL, f"{name}: {e}") from None

        setattr(self, name, call)
        return call


def _bind(proxy, after_exit=None, doze=None, heap=None) -> None:
    """Bind ulib to a system-call proxy (the user host does this before main), with
    what exit does afterwards, how to sleep until the kernel rings, and the heap its
    I/O vector is made in (by default the heap of the process the proxy belongs to)."""
    global _sys, _after_exit, _doze, _heap_of, _buf
    _sys = None if proxy is None else _Checked(proxy)
    _heap_of = heap if heap is not None or proxy is None else proxy._rl_link.rt.heap
    if _buf is not None and not _buf.heap.hf.closed and _buf.alive:
        _buf.drop()     # (a detached client's heap is gone already, its objects with it)
    _buf = None
    _after_exit = after_exit or _default_exit
    _doze = doze


def _heap():
    if _heap_of is None:
        raise Rv6Error(errno.EACCES, "ulib is not bound to a kernel: run the program with spawn, not directly")
    return _heap_of


def _k():
    if _sys is None:
        raise Rv6Error(errno.EACCES, "ulib is not bound to a kernel: run the program with spawn, not directly")
    return _sys


def _blocking(call, *args):
    """call(*args) until it answers something other than None (the kernel's "not yet")."""
    r = call(*args)
    if r is not None:
        return r
    doze = _doze
    if doze is not None:
        os.sched_yield()  # the peer may be about to answer: one more look before sleeping
        r = call(*args)
        if r is not None:
            return r
        delay = _DOZE_MIN_S
        while True:
            doze(delay)  # the kernel rings when the answer may have changed
            r = call(*args)
            if r is not None:
                return r
            delay = min(delay * 2, _DOZE_MAX_S)
    delay = 0.0
    while True:
        if delay == 0.0:
            os.sched_yield()
            delay = _BACKOFF_MIN_S
        else:
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
        r = call(*args)
        if r is not None:
            return r


class Stat(NamedTuple):
    type: int
    ino: int
    nlink: int
    size: int
    mode: int
    mtime_ns: int


# ---------------------------------------------------------------------- processes

def spawn(path: str, argv: list[str], fds: list[int] | None = None) -> int:
    """Run the program at `path` as a child; its pid. fds None: the child gets our 0, 1, 2;
    a list: child fd i = our fd fds[i] (-1 leaves it closed)."""
    return _k().spawn(path, tuple(argv), None if fds is None else tuple(fds))


def exit(status: int = 0):  # noqa: A001 - the system call's name
    """End this process with `status` (does not return)."""
    _k().exit(int(status))
    _after_exit(status)


def wait(pid: int = -1) -> tuple[int, int]:
    """(pid, status) of an exited child (pid -1: any); Rv6Error ECHILD if there is none."""
    return _blocking(_k().wait, pid)


def kill(pid: int) -> None:
    _k().kill(pid)


def getpid() -> int:
    return _k().getpid()


def getppid() -> int:
    return _k().getppid()


def sleep(ms: int) -> None:
    """Sleep `ms` milliseconds (the kernel checks the argument; the wait is ours)."""
    _k().sleep(ms)
    time.sleep(ms / 1000)


def uptime() -> int:
    """Milliseconds since the kernel started."""
    return _k().uptime()


def procs() -> list[tuple[int, int, str, str]]:
    """The process table: (pid, ppid, state, name) each (not in xv6; for ps and tests)."""
    return [tuple(x[:4]) for x in msgpack.unpackb(_k().procs())]


# ---------------------------------------------------------------------- files

def open(path: str, flags: int = O_RDONLY) -> int:  # noqa: A001
    return _k().open(path, flags)


def _vec():
    """This process's I/O vector (MAX_IO bytes in the exchange heap), made at first use
    and again after a failed call took it (a declared error consumes what was moved)."""
    global _buf
    v = _buf
    if v is None or not v.alive:
        v = _buf = _heap().alloc_vec(np.uint8, MAX_IO)
    return v


def _read_once(fd: int, n: int):
    global _buf
    v = _vec()
    _buf = None                         # moved into the kernel: not ours until it returns
    try:
        got, v = _k().read(fd, v, n)
    finally:
        _buf = v if v.alive else None   # a refused call left it ours; a failed one took it
    return None if got < 0 else v.np[:got].tobytes()


def read(fd: int, n: int) -> bytes:
    """Up to n bytes (b"" at EOF), at most MAX_IO a call; waits while a pipe or the
    console is empty."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise Rv6Error(errno.EINVAL, f"read count {n!r}: a count of bytes, 0 or more")
    return _blocking(_read_once, fd, min(n, MAX_IO))


def write(fd: int, data: bytes) -> int:
    """Write all of `data`; the count. Waits while a pipe or the console is full."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Rv6Error(errno.EFAULT, f"write takes bytes, not {type(data).__name__}"
                                     + (": encode the str first, or use printf/puts" if isinstance(data, str) else ""))
    src = np.frombuffer(data, np.uint8) if len(data) else np.zeros(0, np.uint8)
    k = _k()
    done = 0
    while True:
        n = min(len(src) - done, MAX_IO)
        v = _vec()
        v.np[:n] = src[done:done + n]   # lent to the kernel for the call
        w = _blocking(k.write, fd, v, n)
        done += w
        if done >= len(src):
            return done



write_all = write


def close(fd: int) -> None:
    _k().close(fd)


def dup(fd: int) -> int:
    return _k().dup(fd)


def dup2(old: int, new: int) -> int:
    return _k().dup2(old, new)


def pipe() -> tuple[int, int]:
    return tuple(_k().pipe())


def fstat(fd: int) -> Stat:
    return Stat(*_k().fstat(fd))


def stat(path: str) -> Stat:
    return Stat(*_k().stat(path))


def lseek(fd: int, off: int, whence: int = SEEK_SET) -> int:
    return _k().lseek(fd, off, whence)


def link(old: str, new: str) -> None:
    _k().link(old, new)


def unlink(path: str) -> None:
    _k().unlink(path)


def mkdir(path: str) -> None:
    _k().mkdir(path)


def rmdir(path: str) -> None:
    _k().rmdir(path)


def rename(old: str, new: str) -> None:
    _k().rename(old, new)


def mknod(path: str, major: int, minor: int) -> None:
    _k().mknod(path, major, minor)


def chdir(path: str) -> None:
    _k().chdir(path)


def getcwd() -> str:
    return _k().getcwd()


def readdir(path: str) -> list[tuple[str, int, int]]:
    """(name, ino, type) of every entry, "." and ".." included."""
    k = _k()
    out, cookie = [], 0
    while True:
        page, cookie = k.readdir(path, cookie)
        out.extend(tuple(e) for e in msgpack.unpackb(page))
        if cookie == 0:
            return out


# ---------------------------------------------------------------------- helpers

def _fmt(fmt: str, args) -> bytes:
    s = fmt % args if args else fmt
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)


def printf(fmt: str, *args) -> None:
    write(1, _fmt(fmt, args))


def fprintf(fd: int, fmt: str, *args) -> None:
    write(fd, _fmt(fmt, args))


def puts(s, fd: int = 1) -> None:
    """Write s and a newline."""
    data = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)
    write(fd, data + b"\n")


def read_all(fd: int) -> bytes:
    out = bytearray()
    while True:
        piece = read(fd, MAX_IO)
        if not piece:
            return bytes(out)
        out += piece


def readline(fd: int) -> bytes:
    """One line, b"\\n" included (b"" at EOF); byte by byte (see the module's note)."""
    out = bytearray()
    while True:
        b = read(fd, 1)
        if not b:
            return bytes(out)
        out += b
        if b == b"\n":
            return bytes(out)
