"""An in-process test double of `redleaf.rv6.ulib` (the Rv6 user API contract), so the
user programs in rv6/user/ and the shell's wiring are tested before (and apart from) the
kernel domain.

It is a small kernel in one Python process: the pure fs layers (rv6/fs/fs.py on a
MemDisk, programs installed by mkfs's install_programs), a process table, per-process
descriptor tables (16 slots) over a global open-file table, bounded pipes, a console with
scripted input and captured output, and `spawn` that runs the program's source (read from
the fake fs, compiled into a fresh module) in a thread of its own. One big lock (a
Condition) serialises every system call, as xv6's early big kernel lock did; blocking
calls (pipe read/write, wait, sleep) wait on it. `kill` marks the process: it dies at its
next system call, or at once if it is blocked in one (a thread cannot be stopped from
outside: a program spinning without system calls is not killable here, unlike Rv6).

Use only in tests:

    k = Kernel(console_input=b"...")
    with k.installed():                 # `from redleaf.rv6 import ulib` gives this module
        status = k.run(["sh", "-c", "echo hi | wc"])
    k.console.text()                    # what the programs wrote to the console

The module-level functions are the contract's; they find the calling process through a
thread-local set when its thread starts.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat as st
import sys
import threading
import time
import traceback
import types
from typing import NamedTuple

from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.format import ROOTINO
from redleaf.rv6.fs.mkfs import install_programs, mkfs_device

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREATE, O_TRUNC, O_APPEND, O_EXCL = 0x200, 0x400, 0x800, 0x80
T_DIR, T_FILE, T_DEV = 1, 2, 3
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
CONSOLE_MAJOR = 1

NOFILE = 16
NPROC = 48
PIPESIZE = 4096
BLOCKED_TIMEOUT = 60.0      # a test that blocks this long has a bug: fail, do not hang


class Rv6Error(OSError):
    def __init__(self, err: int, message: str):
        super().__init__(err, message)


class Stat(NamedTuple):
    type: int
    ino: int
    nlink: int
    size: int
    mode: int
    mtime_ns: int


class _Exit(BaseException):
    """Unwinds a program's thread on exit() or kill (BaseException: `except Exception`
    in a program must not catch it)."""

    def __init__(self, status: int):
        self.status = status


# --- open files -----------------------------------------------------------------------

class _Pipe:
    def __init__(self):
        self.buf = bytearray()
        self.readers = 1
        self.writers = 1


class _File:
    """An entry of the global open-file table; `refs` counts descriptors naming it."""

    def __init__(self, kind: str, *, fsfd: int | None = None, pipe: _Pipe | None = None,
                 readable: bool = True, writable: bool = False):
        self.kind = kind            # 'fs', 'pipe-r', 'pipe-w', 'console'
        self.fsfd = fsfd
        self.pipe = pipe
        self.readable = readable
        self.writable = writable
        self.refs = 1


class Console:
    def __init__(self, data: bytes = b""):
        self.input = bytearray(data)
        self.output = bytearray()

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


class _Proc:
    def __init__(self, pid: int, parent: "_Proc | None", cwd: int, name: str):
        self.pid = pid
        self.parent = parent
        self.cwd = cwd
        self.name = name
        self.ofile: list[_File | None] = [None] * NOFILE
        self.killed = False
        self.zombie = False
        self.status = 0
        self.root = False           # started by the test (Kernel.start): it reads the status
        self.thread: threading.Thread | None = None


_cur = threading.local()


def _now() -> tuple["Kernel", _Proc]:
    p = getattr(_cur, "proc", None)
    if p is None:
        raise RuntimeError("fake ulib called outside a program started by Kernel.run/spawn")
    return _cur.kernel, p


def _fs_call(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except FsError as e:
        raise Rv6Error(e.errno, e.strerror) from None


def _os_flags(flags: int) -> int:
    acc = flags & 3
    if acc == 3:
        raise Rv6Error(errno.EINVAL, f"open flags {flags:#x}: access mode 3 is not one of "
                                     "O_RDONLY, O_WRONLY, O_RDWR")
    out = acc
    for mine, theirs in ((O_CREATE, os.O_CREAT), (O_TRUNC, os.O_TRUNC), (O_APPEND, os.O_APPEND),
                         (O_EXCL, os.O_EXCL)):
        if flags & mine:
            out |= theirs
    return out


def _type(mode: int) -> int:
    return T_DIR if st.S_ISDIR(mode) else T_DEV if st.S_ISCHR(mode) else T_FILE


class Kernel:
    def __init__(self, console_input: bytes = b"", nblocks: int = 8192, inodes: int = 1024,
                 nproc: int = NPROC):
        self.disk = MemDisk(nblocks)
        mkfs_device(self.disk, inodes=inodes, now_ns=1, zeroed=True)
        self._clock = itertools.count(1_700_000_000 * 10**9, 1000)
        self.fs = FileSystem(self.disk, lambda: next(self._clock))
        install_programs(self.fs)
        self.console = Console(console_input)
        self.lock = threading.Condition()
        self.procs: dict[int, _Proc] = {}
        self.pids = itertools.count(1)
        self.nproc = nproc
        self.init: _Proc | None = None
        self.t0 = time.monotonic()

    # --- test-side helpers ---------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self):
        """Make `from redleaf.rv6 import ulib` (in programs run now) give this module."""
        import redleaf.rv6 as pkg
        me = sys.modules[__name__]
        old_mod = sys.modules.get("redleaf.rv6.ulib")
        had, old_attr = hasattr(pkg, "ulib"), getattr(pkg, "ulib", None)
        sys.modules["redleaf.rv6.ulib"] = me
        pkg.ulib = me
        try:
            yield self
        finally:
            if old_mod is None:
                sys.modules.pop("redleaf.rv6.ulib", None)
            else:
                sys.modules["redleaf.rv6.ulib"] = old_mod
            if had:
                pkg.ulib = old_attr
            else:
                del pkg.ulib

    def write_file(self, path: str, data: bytes) -> None:
        fd = self.fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.fs.write(fd, data)
        self.fs.close(fd)

    def read_file(self, path: str) -> bytes:
        fd = self.fs.open(path)
        try:
            return self.fs.read(fd, 1 << 30)
        finally:
            self.fs.close(fd)

    def start(self, argv: list[str], *, path: str | None = None, as_init: bool = False) -> int:
        """Start a program as a root process on the console; its pid. `as_init`: orphans
        are re-parented to it (else an orphan reaps itself when it exits)."""
        with self.lock:
            p = self._new_proc(None, argv[0])
            p.root = True
            con = _File("console", readable=True, writable=True)
            con.refs = 3
            p.ofile[0] = p.ofile[1] = p.ofile[2] = con
            if as_init:
                self.init = p
            try:
                src = self._load(p, path or f"/bin/{argv[0]}")
            except Rv6Error:
                self.procs.pop(p.pid, None)
                raise
            self._start(p, src, argv)
            return p.pid

    def join(self, pid: int, timeout: float = BLOCKED_TIMEOUT) -> int:
        """Wait for root process `pid`, then for every other process to end; its status."""
        p = self.procs[pid]
        p.thread.join(timeout)
        if p.thread.is_alive():
            raise TimeoutError(f"pid {pid} ({p.name}) did not finish in {timeout}s (blocked?)")
        with self.lock:
            # orphans still running finish before the test looks at the fs
            deadline = time.monotonic() + timeout
            while any(not q.zombie for q in self.procs.values()):
                if not self.lock.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("processes still running: "
                                       + ", ".join(q.name for q in self.procs.values() if not q.zombie))
            self.procs.pop(pid, None)
            if self.init is p:
                self.init = None
        return p.status

    def run(self, argv: list[str], *, path: str | None = None, timeout: float = BLOCKED_TIMEOUT) -> int:
        """Run a program to its end (and every process it left behind); its exit status."""
        return self.join(self.start(argv, path=path), timeout)

    def kill(self, pid: int) -> None:
        with self.lock:
            self.procs[pid].killed = True
            self.lock.notify_all()

    def live(self) -> list[int]:
        with self.lock:
            return [pid for pid, q in self.procs.items() if not q.zombie]

    # --- processes -----------------------------------------------------------------------

    def _new_proc(self, parent: _Proc | None, name: str) -> _Proc:
        if len(self.procs) >= self.nproc:
            raise Rv6Error(errno.EAGAIN, f"the process table is full ({self.nproc}); wait for a child")
        p = _Proc(next(self.pids), parent, parent.cwd if parent else ROOTINO, name)
        self.procs[p.pid] = p
        return p

    def _load(self, p: _Proc, path: str) -> bytes:
        s = _fs_call(self.fs.stat, path, cwd=p.parent.cwd if p.parent else ROOTINO)
        if not st.S_ISREG(s.st_mode):
            self.procs.pop(p.pid)
            raise Rv6Error(errno.EACCES, f"{path}: not a regular file; cannot run it")
        fd = _fs_call(self.fs.open, path, os.O_RDONLY, cwd=p.parent.cwd if p.parent else ROOTINO)
        try:
            return self.fs.read(fd, s.st_size)
        finally:
            self.fs.close(fd)

    def _start(self, p: _Proc, src: bytes, argv: list[str]) -> None:
        t = threading.Thread(target=self._body, args=(p, src, list(argv)), daemon=True,
                             name=f"rv6:{p.pid}:{p.name}")
        p.thread = t
        t.start()

    def _body(self, p: _Proc, src: bytes, argv: list[str]) -> None:
        _cur.kernel, _cur.proc = self, p
        status = 0
        try:
            mod = types.ModuleType(f"rv6prog_{p.pid}")
            exec(compile(src, f"/bin/{p.name}", "exec"), mod.__dict__)
            r = mod.main(argv)
            status = 0 if r is None else int(r)
        except _Exit as e:
            status = e.status
        except BaseException as e:      # a program's fault is its death, with a status
            if isinstance(e, Rv6Error) and e.errno == errno.EPIPE:
                status = 141            # its reader left: quietly, as the real user host does
                return
            status = 1
            last = traceback.extract_tb(e.__traceback__)[-1:] or None
            where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
            try:
                with self.lock:
                    f = p.ofile[2]
                    if f is not None and not p.killed:
                        self._write_file(p, f, f"{p.name}: {type(e).__name__}: {e}{where}\n".encode())
            except BaseException:
                pass
        finally:
            if p.killed:
                status = 137
            with self.lock:
                self._exit(p, status)

    def _exit(self, p: _Proc, status: int) -> None:
        for fd, f in enumerate(p.ofile):
            if f is not None:
                p.ofile[fd] = None
                self._release(f)
        heir = self.init if self.init is not None and self.init is not p and not self.init.zombie else None
        for q in list(self.procs.values()):
            if q.parent is p:
                q.parent = heir
                if heir is None and q.zombie:
                    del self.procs[q.pid]       # no one will wait for it
        p.status = status
        p.zombie = True
        if p.parent is None and not p.root:
            del self.procs[p.pid]               # an orphan with no init reaps itself
        self.lock.notify_all()

    def _check(self, p: _Proc) -> None:
        if p.killed:
            raise _Exit(137)

    def _wait_cond(self, p: _Proc) -> None:
        if not self.lock.wait(BLOCKED_TIMEOUT):
            raise Rv6Error(errno.EDEADLK, f"pid {p.pid} ({p.name}) blocked {BLOCKED_TIMEOUT}s in a "
                                          "fake system call; the test would hang")
        self._check(p)

    # --- files ---------------------------------------------------------------------------

    def _fd(self, p: _Proc, fd) -> _File:
        if not isinstance(fd, int) or not 0 <= fd < NOFILE or p.ofile[fd] is None:
            raise Rv6Error(errno.EBADF, f"descriptor {fd!r} is not open")
        return p.ofile[fd]

    def _alloc_fd(self, p: _Proc, f: _File, lowest: int = 0) -> int:
        for i in range(lowest, NOFILE):
            if p.ofile[i] is None:
                p.ofile[i] = f
                return i
        raise Rv6Error(errno.EMFILE, f"all {NOFILE} descriptors are open; close one")

    def _release(self, f: _File) -> None:
        f.refs -= 1
        if f.refs:
            return
        if f.kind == "fs":
            self.fs.close(f.fsfd)
        elif f.kind == "pipe-r":
            f.pipe.readers -= 1
        elif f.kind == "pipe-w":
            f.pipe.writers -= 1
        self.lock.notify_all()

    def _read_file(self, p: _Proc, f: _File, n: int) -> bytes:
        if not f.readable:
            raise Rv6Error(errno.EBADF, "descriptor not open for reading")
        if f.kind == "fs":
            return _fs_call(self.fs.read, f.fsfd, n)
        if f.kind == "console":
            data = bytes(self.console.input[:n])
            del self.console.input[:n]
            return data
        pipe = f.pipe
        while not pipe.buf and pipe.writers:
            self._wait_cond(p)
        data = bytes(pipe.buf[:n])
        del pipe.buf[:n]
        self.lock.notify_all()
        return data

    def _write_file(self, p: _Proc, f: _File, data: bytes) -> int:
        if not f.writable:
            raise Rv6Error(errno.EBADF, "descriptor not open for writing")
        if f.kind == "fs":
            return _fs_call(self.fs.write, f.fsfd, data)
        if f.kind == "console":
            self.console.output += data
            return len(data)
        pipe, done = f.pipe, 0
        while done < len(data):
            if not pipe.readers:
                raise Rv6Error(errno.EPIPE, "the pipe's readers are all gone")
            room = PIPESIZE - len(pipe.buf)
            if room == 0:
                self._wait_cond(p)
                continue
            pipe.buf += data[done:done + room]
            done += min(room, len(data) - done)
            self.lock.notify_all()
        return done


def _syscall(fn):
    """Run the body under the big lock, after checking the caller was not killed."""
    def call(*a, **kw):
        k, p = _now()
        with k.lock:
            k._check(p)
            return fn(k, p, *a, **kw)
    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def _str(x, what: str) -> str:
    if not isinstance(x, str):
        raise Rv6Error(errno.EINVAL, f"{what} must be a str, not {type(x).__name__}")
    return x


# --- processes --------------------------------------------------------------------------

@_syscall
def spawn(k: Kernel, p: _Proc, path: str, argv: list[str], fds: list[int] | None = None) -> int:
    _str(path, "path")
    if not isinstance(argv, (list, tuple)) or not all(isinstance(a, str) for a in argv):
        raise Rv6Error(errno.EINVAL, "argv must be a list of str")
    src_fds = [0, 1, 2] if fds is None else list(fds)     # child fd i = our fd fds[i]
    if len(src_fds) > NOFILE:
        raise Rv6Error(errno.EINVAL, f"fds has {len(src_fds)} entries; at most {NOFILE}")
    files = []
    for fd in src_fds:
        if (fds is None and p.ofile[fd] is None) or fd == -1:
            files.append(None)      # a closed slot stays closed; -1 asks for it closed
        else:
            files.append(k._fd(p, fd))
    c = k._new_proc(p, (argv[0] if argv else path).rsplit("/", 1)[-1])
    try:
        src = k._load(c, path)
    except Rv6Error:
        k.procs.pop(c.pid, None)
        raise
    for i, f in enumerate(files):
        if f is not None:
            f.refs += 1
            c.ofile[i] = f
    k._start(c, src, list(argv))
    return c.pid


def exit(status: int = 0) -> None:  # noqa: A001 - the contract's name
    _now()
    raise _Exit(int(status))


@_syscall
def wait(k: Kernel, p: _Proc, pid: int = -1) -> tuple[int, int]:
    while True:
        kids = [q for q in k.procs.values() if q.parent is p and (pid == -1 or q.pid == pid)]
        if not kids:
            raise Rv6Error(errno.ECHILD, f"no child {'' if pid == -1 else pid} to wait for")
        for q in kids:
            if q.zombie:
                del k.procs[q.pid]
                return q.pid, q.status
        k._wait_cond(p)


@_syscall
def kill(k: Kernel, p: _Proc, pid: int) -> None:
    q = k.procs.get(pid)
    if q is None or q.zombie:
        raise Rv6Error(errno.ESRCH, f"no process {pid}")
    q.killed = True
    k.lock.notify_all()


@_syscall
def getpid(k: Kernel, p: _Proc) -> int:
    return p.pid


@_syscall
def sleep(k: Kernel, p: _Proc, ms: int) -> None:
    end = time.monotonic() + ms / 1000
    while (left := end - time.monotonic()) > 0:
        k.lock.wait(left)
        k._check(p)


@_syscall
def uptime(k: Kernel, p: _Proc) -> int:
    return int((time.monotonic() - k.t0) * 1000)


# --- files ------------------------------------------------------------------------------

@_syscall
def open(k: Kernel, p: _Proc, path: str, flags: int = O_RDONLY) -> int:  # noqa: A001
    _str(path, "path")
    of = _os_flags(flags)
    try:
        s = k.fs.stat(path, cwd=p.cwd)
    except FsError:
        s = None
    if s is not None and st.S_ISCHR(s.st_mode):
        if os.major(s.st_rdev) != CONSOLE_MAJOR:
            raise Rv6Error(errno.ENODEV, f"{path}: no driver for device major {os.major(s.st_rdev)}")
        f = _File("console", readable=(flags & 3) != O_WRONLY, writable=(flags & 3) != O_RDONLY)
    else:
        fsfd = _fs_call(k.fs.open, path, of, 0o644, cwd=p.cwd)
        f = _File("fs", fsfd=fsfd, readable=(flags & 3) != O_WRONLY, writable=(flags & 3) != O_RDONLY)
    try:
        return k._alloc_fd(p, f)
    except Rv6Error:
        f.refs = 1
        k._release(f)
        raise


@_syscall
def read(k: Kernel, p: _Proc, fd: int, n: int) -> bytes:
    if not isinstance(n, int) or n < 0:
        raise Rv6Error(errno.EINVAL, f"read size {n!r} must be an int >= 0")
    return k._read_file(p, k._fd(p, fd), n)


@_syscall
def write(k: Kernel, p: _Proc, fd: int, data: bytes) -> int:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Rv6Error(errno.EINVAL, f"write takes bytes, not {type(data).__name__}")
    return k._write_file(p, k._fd(p, fd), bytes(data))


@_syscall
def close(k: Kernel, p: _Proc, fd: int) -> None:
    f = k._fd(p, fd)
    p.ofile[fd] = None
    k._release(f)


@_syscall
def dup(k: Kernel, p: _Proc, fd: int) -> int:
    f = k._fd(p, fd)
    nfd = k._alloc_fd(p, f)
    f.refs += 1
    return nfd


@_syscall
def dup2(k: Kernel, p: _Proc, old: int, new: int) -> int:
    f = k._fd(p, old)
    if not isinstance(new, int) or not 0 <= new < NOFILE:
        raise Rv6Error(errno.EBADF, f"descriptor {new!r} is out of range 0..{NOFILE - 1}")
    if old == new:
        return new
    if p.ofile[new] is not None:
        g, p.ofile[new] = p.ofile[new], None
        k._release(g)
    p.ofile[new] = f
    f.refs += 1
    return new


@_syscall
def pipe(k: Kernel, p: _Proc) -> tuple[int, int]:
    pp = _Pipe()
    r = _File("pipe-r", pipe=pp, readable=True)
    w = _File("pipe-w", pipe=pp, readable=False, writable=True)
    rfd = k._alloc_fd(p, r)
    try:
        wfd = k._alloc_fd(p, w)
    except Rv6Error:
        p.ofile[rfd] = None
        raise
    return rfd, wfd


def _stat_of(s) -> Stat:
    return Stat(_type(s.st_mode), s.st_ino, s.st_nlink, s.st_size, s.st_mode & 0o7777, s.st_mtime_ns)


@_syscall
def fstat(k: Kernel, p: _Proc, fd: int) -> Stat:
    f = k._fd(p, fd)
    if f.kind == "fs":
        return _stat_of(_fs_call(k.fs.fstat, f.fsfd))
    if f.kind == "console":
        return Stat(T_DEV, 0, 1, 0, 0o666, 0)
    return Stat(T_FILE, 0, 1, len(f.pipe.buf), 0o600, 0)


@_syscall
def stat(k: Kernel, p: _Proc, path: str) -> Stat:
    return _stat_of(_fs_call(k.fs.stat, _str(path, "path"), cwd=p.cwd))


@_syscall
def lseek(k: Kernel, p: _Proc, fd: int, off: int, whence: int = SEEK_SET) -> int:
    f = k._fd(p, fd)
    if f.kind != "fs":
        raise Rv6Error(errno.ESPIPE, f"descriptor {fd} is a pipe or device; it cannot seek")
    return _fs_call(k.fs.seek, f.fsfd, off, whence)


@_syscall
def link(k: Kernel, p: _Proc, old: str, new: str) -> None:
    _fs_call(k.fs.link, _str(old, "old"), _str(new, "new"), cwd=p.cwd)


@_syscall
def unlink(k: Kernel, p: _Proc, path: str) -> None:
    _fs_call(k.fs.unlink, _str(path, "path"), cwd=p.cwd)


@_syscall
def mkdir(k: Kernel, p: _Proc, path: str) -> None:
    _fs_call(k.fs.mkdir, _str(path, "path"), 0o755, cwd=p.cwd)


@_syscall
def rmdir(k: Kernel, p: _Proc, path: str) -> None:
    _fs_call(k.fs.rmdir, _str(path, "path"), cwd=p.cwd)


@_syscall
def rename(k: Kernel, p: _Proc, old: str, new: str) -> None:
    _fs_call(k.fs.rename, _str(old, "old"), _str(new, "new"), cwd=p.cwd)


@_syscall
def mknod(k: Kernel, p: _Proc, path: str, major: int, minor: int) -> None:
    _fs_call(k.fs.mknod, _str(path, "path"), st.S_IFCHR | 0o666, major, minor, cwd=p.cwd)


@_syscall
def chdir(k: Kernel, p: _Proc, path: str) -> None:
    ino = _fs_call(k.fs.lookup, _str(path, "path"), cwd=p.cwd)
    if not _fs_call(k.fs.stat, path, cwd=p.cwd).is_dir:
        raise Rv6Error(errno.ENOTDIR, f"{path}: not a directory")
    p.cwd = ino


@_syscall
def getcwd(k: Kernel, p: _Proc) -> str:
    names, ino = [], p.cwd
    while ino != ROOTINO:
        parent = _fs_call(k.fs.lookup, "..", cwd=ino)
        hit = next((e.name for e in _fs_call(k.fs.readdir, ".", cwd=parent)
                    if e.ino == ino and e.name not in (".", "..")), None)
        if hit is None:
            raise Rv6Error(errno.ENOENT, "the working directory was removed")
        names.append(hit)
        ino = parent
    return "/" + "/".join(reversed(names))


@_syscall
def readdir(k: Kernel, p: _Proc, path: str) -> list[tuple[str, int, int]]:
    out = []
    for e in _fs_call(k.fs.readdir, _str(path, "path"), cwd=p.cwd):
        t = T_DIR if e.type == st.S_IFDIR else T_DEV if e.type == st.S_IFCHR else T_FILE
        out.append((e.name, e.ino, t))
    return out


# --- helpers (in ulib they are library code over the calls above) -------------------------

def fprintf(fd: int, fmt: str, *args) -> None:
    write(fd, ((fmt % args) if args else fmt).encode())


def printf(fmt: str, *args) -> None:
    fprintf(1, fmt, *args)


def puts(s: str, fd: int = 1) -> None:
    """s and a newline, as C's puts."""
    write(fd, (s.encode() if isinstance(s, str) else bytes(s)) + b"\n")


def read_all(fd: int) -> bytes:
    out = bytearray()
    while chunk := read(fd, 65536):
        out += chunk
    return bytes(out)


def readline(fd: int) -> bytes:
    """Byte by byte (no buffering in the library: a child inheriting the fd reads on)."""
    out = bytearray()
    while (c := read(fd, 1)):
        out += c
        if c == b"\n":
            break
    return bytes(out)
