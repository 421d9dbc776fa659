"""KernelDomain: Rv6's kernel (system-call) domain. It exports `Rv6Sys`
(rv6/kernel_interface.py) to user programs and terminals.

Owns: the process table, the open-file table, pipes and consoles (the pure layers of
rv6/kernel), the map from a caller's domain id to its process, and the fs descriptors
behind open files. Calls: the pure kernel layers, the `FileSystem` proxy of the fs
domain it is granted (`uses = ["rv6fs"]`), and the domain runtime (its heap, the
identity of the call being served, and the child-domain commands of a `may_spawn`
domain); never the supervisor's code.

Manifest:

    [[domain]]
    name = "rv6kernel"
    target = "redleaf.rv6.kernel_domain:KernelDomain"
    uses = ["rv6fs"]
    may_spawn = true
    spawn_target = "redleaf.rv6.user_host:UserProgram"
    config = { fs = "rv6fs" }

Identity: a call's process is found from the domain id the supervisor wrote into the
call's channel, never from an argument. `spawn` makes the process first, then asks the
supervisor for a child domain (spawn_child) and binds its id to that process. A caller
the kernel did not spawn (an attached client: `redleaf sh`, a test, `redleaf attach`)
gets a *session*: a process of its own, child of init, whose descriptors 0, 1, 2 are a
console that the client drains and feeds (`console_*`). A session ends when its client
is gone (its children go to init).

Deaths: a program's exit call makes it a zombie at once; the supervisor's `child_exit`
notice (after the domain's heap objects are reclaimed) is the backstop for a program
that raised past its host, called os._exit, or was killed: it becomes a zombie with
128+signal or its exit code. Either way its descriptors close, so pipe peers see EOF
and EPIPE. Notices are read whenever an answer would be "not yet" (a pipe read, a wait)
and at each spawn, so a peer's death is seen by whoever waits on it.

Blocking: never here (see kernel_interface). Faults: a bad argument is an Rv6Error; an
fs error is passed on with its errno; the fs domain crashing is EIO for the calls it
fails (its restart invalidates the open files on it: EIO until they are closed).
"""

from __future__ import annotations

import errno
import os
import stat as st
import time

import msgpack
import numpy as np

from redleaf.domains import channel as chan
from redleaf.domains.doorbell import Bell
from redleaf.domains.errors import ControlError, RpcError
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs_interface import FileSystem

from .kernel import path as kpath
from .kernel.console import CONSOLE_MAJOR, Console
from .kernel.errors import WOULD_BLOCK, Rv6Error
from .kernel.file import CONSOLE, INODE, PIPE, FdTable, FileTable, OpenFile, check_fd
from .kernel.pipe import Pipe
from .kernel.proc import INIT_PID, KILLED_STATUS, RUNNING, ZOMBIE, Proc, ProcTable
from .kernel_interface import (MAX_IO, MAX_RW, O_ALL, O_APPEND, O_CREATE, O_EXCL,
                               O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, T_DEV, T_DIR, T_FILE, T_PIPE, Rv6Sys, StatTuple)

#: the largest program source spawn reads (a program is one Python file)
MAX_IMAGE = 4 << 20
#: exec_image hands the source over in pieces of this size (inline values are <= 64 KiB)
IMAGE_CHUNK = 48 * 1024
#: exit status of a program whose domain ended without a status (its host died oddly)
LOST_STATUS = 255
_ST_TYPE = {st.S_IFDIR: T_DIR, st.S_IFREG: T_FILE, st.S_IFCHR: T_DEV}
_MAX_OFF = (1 << 63) - 1


def _int(v, what: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise Rv6Error(errno.EINVAL, f"{what} {v!r} is outside {lo}..{hi}")
    return v


def status_of_exit_code(code) -> int:
    """A dead domain's exit code as an Rv6 exit status: killed by signal s is 128+s."""
    if code is None:
        return LOST_STATUS
    if code < 0:
        return 128 + (-code)
    return code & 0xFF


def _stat_from_fs(t) -> StatTuple:
    # FileSystem.stat's tuple is in STAT_FIELDS order: ino, mode, nlink, uid, gid, size, ..., mtime_ns (9)
    ino, mode, nlink, size, mtime_ns = t[0], t[1], t[2], t[5], t[9]
    return (_ST_TYPE.get(st.S_IFMT(mode), 0), ino, nlink, size, st.S_IMODE(mode), mtime_ns)


def _user_bytes(buf, n, what: str):
    """The first n bytes of a caller's byte vector, checked (a bad one is the caller's
    EINVAL/EFAULT, never the kernel's panic)."""
    _int(n, f"{what} count", 0, MAX_IO)
    if getattr(buf, "elem_type", None) != np.uint8:
        raise Rv6Error(errno.EFAULT, f"{what}: the buffer holds {getattr(buf, 'elem_type', '?')}, not uint8 bytes")
    if n > len(buf):
        raise Rv6Error(errno.EINVAL, f"{what}: count {n} exceeds the buffer's {len(buf)} bytes")
    return buf.np[:n]


class KernelDomain(Rv6Sys):
    def __init__(self, ctx):
        self.ctx = ctx
        self.rt = ctx.rt
        # not re-entrant: while a system call waits for the fs, no other process's call
        # runs in the kernel, so one call's use of the kernel's state and of its fs buffer
        # never interleaves with another's (the fs never calls back)
        self.fs = ctx.use(ctx.config.get("fs", "rv6fs"), FileSystem, reentrant=False)
        self.files = FileTable()
        self.ptable = ProcTable(self.files)
        self.by_domain: dict[int, Proc] = {}  # spawned programs (and sessions) by caller domain id
        self.domain_of: dict[int, int] = {}  # pid -> its program's domain id
        self.sessions: dict[int, tuple[Proc, int]] = {}  # client domain id -> (session, channel id)
        self.images: dict[int, bytes] = {}  # pid -> program source not yet fetched
        #: who was told "not yet" about what: a pipe, a console, ("child", parent pid) -> pids
        self.waiting: dict[object, set[int]] = {}
        self.bells: dict[int, Bell] = {}  # pid -> its domain's doorbell, opened at its first wake-up
        self.start = time.monotonic()
        self.buf = ctx.heap.alloc_vec(np.uint8, MAX_IO)
        self._fs_boot()
        print(f"rv6kernel: up (init pid {INIT_PID}), file system {ctx.config.get('fs', 'rv6fs')}", flush=True)

    def _fs_boot(self) -> None:
        """xv6's init: /dev/console exists (mknod it if missing), and so do /dev, /bin and
        /tmp (a freshly formatted fs has only the root)."""
        for d in ("/dev", "/bin", "/tmp"):
            try:
                self.fs.mkdir(d, 0o755)
            except FsError as e:
                if e.errno != errno.EEXIST:
                    raise
        try:
            self.fs.stat("/dev/console")
        except FsError as e:
            if e.errno != errno.ENOENT:
                raise
            self.fs.mknod("/dev/console", st.S_IFCHR | 0o666, CONSOLE_MAJOR, 0)
        self.fs.sync()  # durable: a crash of the fs must not take /dev/console back

    # ------------------------------------------------------------------ plumbing
    def _fscall(self, fn, *args):
        try:
            return fn(*args)
        except FsError as e:
            raise Rv6Error(e.errno, e.strerror) from None
        except RpcError as e:
            raise Rv6Error(errno.EIO, f"the file system failed the call ({type(e).__name__}: {e}); "
                                      f"open files on it are gone, open them again") from None

    def _me(self) -> Proc:
        """The calling process, from the domain id of the call's channel."""
        ch = self.rt.serving
        did = ch.caller
        p = self.by_domain.get(did)
        if p is not None and p.state != RUNNING:
            # an exited program's domain id, reused by a new caller once the supervisor
            # released it: its death notice is on the way (or here already)
            self._reap_notices()
            p = self.by_domain.get(did)
            if p is not None and p.state != RUNNING:
                raise Rv6Error(errno.ESRCH, f"process {p.pid} has exited" + (" (killed)" if p.killed else ""))
        if p is not None and p.session and self.sessions[did][1] != ch.chan_id:
            if self.rt.client_alive(self.sessions[did][1]):
                self.sessions[did] = (p, ch.chan_id)  # the same client on a second channel
            else:
                # a new client under the id of one that is gone: its session is not this one
                self._end_session(did)
                p = None
        if p is not None:
            return p
        return self._new_session(did, ch.chan_id)

    def _new_session(self, did: int, chan_id: int) -> Proc:
        self._end_gone_sessions()
        p = self.ptable.alloc(self.ptable.init, f"session-{did}")
        p.session = True
        p.domain = did
        p.console = Console()
        f = self.files.open(OpenFile(CONSOLE, True, True, obj=p.console, path="/dev/console"))
        p.fds.install(f)
        for _ in range(2):
            p.fds.install(self.files.dup(f))
        self.by_domain[did] = p
        self.sessions[did] = (p, chan_id)
        return p

    def _end_gone_sessions(self) -> bool:
        """End the sessions whose client is gone: the console hangs up (its readers see
        EOF, its writers' output is dropped) and the session's children go to init."""
        ended = False
        for did, (_p, chan_id) in list(self.sessions.items()):
            if not self.rt.client_alive(chan_id):
                self._end_session(did)
                ended = True
        return ended

    def _end_session(self, did: int) -> None:
        p, _chan = self.sessions.pop(did)
        if self.by_domain.get(did) is p:
            del self.by_domain[did]
        p.console.hang_up()
        self._wake(p.console)
        self._exit(p, 0)

    def _refresh(self) -> bool:
        """Take in what happened outside the calls (deaths, gone terminals); did anything?"""
        reaped = self._reap_notices()
        return self._end_gone_sessions() or reaped

    def _release(self, files: list) -> None:
        """The last reference of each file is gone: release what it refers to."""
        for f in files:
            if f.kind == INODE:
                try:
                    self.fs.close(self._fsfd(f))
                except (FsError, RpcError, Rv6Error):
                    pass  # a restarted fs lost the descriptor already
            elif f.kind == PIPE:
                if f.readable:
                    f.obj.close_reader()
                if f.writable:
                    f.obj.close_writer()
                self._wake(f.obj)

    def _fs_channel(self):
        """The channel our fs calls go through while it is open, else None. A restarted
        fs is reached through a new channel, and its descriptors are a new table whose
        numbers the old ones may now name (another client's files): a descriptor is
        used only through the channel it was opened on."""
        link = getattr(self.fs, "_rl_link", None)
        if link is None:
            return self  # an fs in this process (tests): it cannot restart under us
        ch = getattr(link, "ch", None)
        if getattr(link, "broken", True) or ch is None or ch.state != chan.OPEN:
            return None
        return ch

    def _fsfd(self, f: OpenFile) -> int:
        """The fs descriptor of open file f, if the fs that gave it is still the one we talk to."""
        ch = self._fs_channel()
        if ch is None or ch is not f.extra.get("fs_ch"):
            raise Rv6Error(errno.EIO, f"{f.path}: the file system restarted since it was opened; "
                                      f"close it and open it again")
        return f.obj

    def _fs_read(self, fsfd: int, n: int) -> bytes:
        """n bytes at most from fs descriptor fsfd through our heap buffer (moved to the
        fs and back; a failed call leaves it with the fs, so make a new one)."""
        try:
            got, self.buf = self._fscall(self.fs.read, fsfd, self.buf, n)
        finally:
            if not self.buf.alive:
                self.buf = self.ctx.heap.alloc_vec(np.uint8, MAX_IO)
        return self.buf.np[:got].tobytes()

    def _exit(self, p: Proc, status: int) -> None:
        self._release(self.ptable.exit(p, status))
        self.images.pop(p.pid, None)
        bell = self.bells.pop(p.pid, None)
        if bell is not None:
            bell.close()
        self._wake(("child", p.ppid))

    # -- wake-ups: a caller told "not yet" sleeps on its doorbell; ring it when that may change
    def _wait_on(self, key, p: Proc) -> None:
        self.waiting.setdefault(key, set()).add(p.pid)

    def _wake(self, key) -> None:
        pids = self.waiting.pop(key, None)
        if not pids:
            return
        for pid in pids:
            bell = self.bells.get(pid)
            if bell is None:
                p = self.ptable.procs.get(pid)
                if p is None or p.domain is None or p.state != RUNNING:
                    continue
                try:
                    bell = self.bells[pid] = Bell(self.rt.paths.bell(p.domain))
                except OSError:
                    continue  # its domain is gone: its death notice comes
            try:
                bell.ring()
            except OSError:
                pass

    def _reap_notices(self) -> bool:
        """Take the supervisor's child_exit notices: each dead program becomes a zombie.

        A notice always comes before its domain id can name anyone else to us: the
        supervisor sends it as it releases the id, ahead of the reply to any later
        spawn_child of ours (one socket, in order), and spawn takes notices in before
        it binds a new child to the id it got."""
        seen = False
        for n in self.ctx.child_exits():
            did = n.get("child")
            p = self.by_domain.get(did)
            if p is None or p.session:
                continue
            del self.by_domain[did]
            self.domain_of.pop(p.pid, None)
            seen = True
            if p.state == RUNNING:
                status = KILLED_STATUS if p.killed else status_of_exit_code(n.get("code"))
                self._exit(p, status)
        return seen

    # ------------------------------------------------------------------ processes
    def spawn(self, path: str, argv: tuple[str, ...], fds) -> int:
        me = self._me()
        self._refresh()
        full = kpath.resolve(me.cwd, path)
        if len(argv) > 1024 or sum(len(a) for a in argv) > 32 * 1024:
            raise Rv6Error(errno.E2BIG, "argv holds more than 1024 arguments or 32 KiB")
        source = self._read_image(full)
        try:
            compile(source, full, "exec", dont_inherit=True)
        except Exception as e:  # noqa: BLE001 - SyntaxError, or a source that defeats the compiler
            # (RecursionError on absurd nesting, ValueError on NUL bytes): the file's fault, never ours
            raise Rv6Error(errno.ENOEXEC, f"{full} is not a runnable program: {type(e).__name__}: {e}") from None
        table = FdTable(self.files)
        table.inherit(me.fds, list(fds) if fds is not None else None)
        try:
            child = self.ptable.alloc(me, full.rsplit("/", 1)[-1] or full)
        except Rv6Error:
            self._release(table.close_all())
            raise
        child.fds = table
        try:
            did = self.ctx.spawn_child({"pid": child.pid, "path": full, "argv": list(argv)})
        except ControlError as e:
            self._release(self.ptable.abandon(child))  # it never ran: no zombie to wait for
            raise Rv6Error(errno.EAGAIN, f"cannot start a domain for {full}: {e}") from None
        # the id's previous holder (a program, a client) is gone: take that in first
        self._refresh()
        if did in self.sessions:
            self._end_session(did)
        child.domain = did
        self.by_domain[did] = child
        self.domain_of[child.pid] = did
        self.images[child.pid] = source
        return child.pid

    def _read_image(self, full: str) -> bytes:
        t = self._fscall(self.fs.stat, full)
        if st.S_ISDIR(t[1]):
            raise Rv6Error(errno.EACCES, f"{full} is a directory, not a program")
        if not st.S_ISREG(t[1]):
            raise Rv6Error(errno.EACCES, f"{full} is not a regular file")
        if t[5] > MAX_IMAGE:
            raise Rv6Error(errno.E2BIG, f"{full} is {t[5]} bytes; a program is at most {MAX_IMAGE}")
        fd = self._fscall(self.fs.open, full, os.O_RDONLY, 0)
        ch = self._fs_channel()
        try:
            out = bytearray()
            while True:
                piece = self._fs_read(fd, MAX_RW)
                if not piece:
                    return bytes(out)
                out += piece
                if len(out) > MAX_IMAGE:
                    raise Rv6Error(errno.E2BIG, f"{full} grew past {MAX_IMAGE} bytes while read")
        finally:
            if ch is not None and self._fs_channel() is ch:  # not another client's fd of a new fs
                try:
                    self.fs.close(fd)
                except (FsError, RpcError):
                    pass

    def exec_image(self, offset: int) -> bytes:
        me = self._me()
        _int(offset, "offset", 0, MAX_IMAGE)
        img = self.images.get(me.pid)
        if img is None:
            raise Rv6Error(errno.ENOEXEC, f"process {me.pid} has no program image to fetch")
        piece = img[offset:offset + IMAGE_CHUNK]
        if not piece:
            del self.images[me.pid]
        return piece

    def exit(self, status: int) -> None:
        me = self._me()
        _int(status, "exit status", -(1 << 31), (1 << 31) - 1)
        if me.session:
            raise Rv6Error(errno.EPERM, "a terminal's session ends when its client detaches, not by exit")
        self._exit(me, status & 0xFF)

    def wait(self, pid: int):
        me = self._me()
        _int(pid, "pid", -1, 1 << 31)
        r = self.ptable.wait(me, pid)
        if r is WOULD_BLOCK and self._refresh():
            r = self.ptable.wait(me, pid)
        if r is WOULD_BLOCK:
            self._wait_on(("child", me.pid), me)
            return None
        return r

    def kill(self, pid: int) -> None:
        me = self._me()
        _int(pid, "pid", 1, 1 << 31)
        p = self.ptable.get(pid)
        if p.pid == INIT_PID or p.session:
            raise Rv6Error(errno.EPERM, f"process {pid} ({p.name}) cannot be killed")
        self._kill(p)
        del me

    def _kill(self, p: Proc) -> None:
        if p.state != RUNNING:
            return  # a zombie: already dead
        pid = p.pid
        p.killed = True
        did = self.domain_of.get(pid)
        if did is not None:
            try:
                self.ctx.kill_child(did)
            except ControlError:
                pass  # it died meanwhile: its notice comes
        self._exit(p, KILLED_STATUS)

    def getpid(self) -> int:
        return self._me().pid

    def getppid(self) -> int:
        return self._me().ppid

    def sleep(self, ms: int) -> int:
        self._me()
        _int(ms, "ms", 0, 1 << 40)
        return self.uptime() + ms

    def uptime(self) -> int:
        return int((time.monotonic() - self.start) * 1000)

    def procs(self) -> bytes:
        self._me()
        self._refresh()
        return msgpack.packb([[p.pid, p.ppid, p.state, p.name, p.domain or 0] for p in sorted(self.ptable.procs.values(),
                                                                                key=lambda p: p.pid)])

    # ------------------------------------------------------------------ files
    def open(self, path: str, flags: int) -> int:
        me = self._me()
        _int(flags, "flags", 0, 0xFFFFFFFF)
        if flags & ~O_ALL or flags & 3 == 3:
            raise Rv6Error(errno.EINVAL, f"open flags {flags:#x}: unknown bits, or O_WRONLY|O_RDWR together")
        full = kpath.resolve(me.cwd, path)
        acc = flags & 3
        readable, writable = acc in (O_RDONLY, O_RDWR), acc in (O_WRONLY, O_RDWR)
        try:
            t = self.fs.stat(full)
        except FsError as e:
            if e.errno != errno.ENOENT or not flags & O_CREATE:
                raise Rv6Error(e.errno, e.strerror) from None
            t = None
        except RpcError:
            raise Rv6Error(errno.EIO, "the file system failed the call") from None
        if t is not None and st.S_ISCHR(t[1]):
            if flags & O_CREATE and flags & O_EXCL:
                raise Rv6Error(errno.EEXIST, f"{full} exists")
            major = os.major(t[11])
            if major != CONSOLE_MAJOR:
                raise Rv6Error(errno.ENXIO, f"{full}: no driver for device major {major}")
            if me.console is None:
                raise Rv6Error(errno.ENXIO, f"{full}: process {me.pid} has no terminal")
            f = OpenFile(CONSOLE, readable, writable, obj=me.console, path=full)
        else:
            if t is not None and st.S_ISDIR(t[1]) and writable:
                raise Rv6Error(errno.EISDIR, f"{full} is a directory")
            lflags = {O_RDONLY: os.O_RDONLY, O_WRONLY: os.O_WRONLY, O_RDWR: os.O_RDWR}[acc]
            for bit, lin in ((O_CREATE, os.O_CREAT), (O_TRUNC, os.O_TRUNC), (O_APPEND, os.O_APPEND),
                             (O_EXCL, os.O_EXCL)):
                if flags & bit:
                    lflags |= lin
            fsfd = self._fscall(self.fs.open, full, lflags, 0o644)
            f = OpenFile(INODE, readable, writable, obj=fsfd, path=full, append=bool(flags & O_APPEND))
            f.extra["fs_ch"] = self._fs_channel()
        try:
            self.files.open(f)
        except Rv6Error:
            self._release([f])
            raise
        try:
            return me.fds.install(f)
        except Rv6Error:
            self.files.close(f)
            self._release([f])
            raise

    def read(self, fd: int, buf, n: int):
        """Fill the first bytes of the caller's vector (moved in and back): (count, buf),
        count -1 when nothing is there yet. A file's read moves the vector on to the fs
        and back: the data lands where the caller reads it, no copy in the kernel."""
        me = self._me()
        f = me.fds.get(fd)
        view = _user_bytes(buf, n, "read")
        if not f.readable:
            raise Rv6Error(errno.EBADF, f"descriptor {fd} is not open for reading")
        if f.kind == INODE:
            return self._fscall(self.fs.read, self._fsfd(f), buf, n)
        r = f.obj.read(n)
        if r is WOULD_BLOCK and self._refresh():
            r = f.obj.read(n)
        if r is WOULD_BLOCK:
            self._wait_on(f.obj, me)
            return -1, buf
        view[:len(r)] = np.frombuffer(r, np.uint8)
        if r and (f.kind != PIPE or f.obj.capacity - len(f.obj.buf) >= f.obj.capacity // 2):
            # room for its writers: for a pipe once half of it is free, so a writer
            # wakes to write much rather than at every read of a piece
            self._wake(f.obj)
        return len(r), buf

    def write(self, fd: int, buf, n: int):
        """Write the first n bytes of the caller's vector (lent for the call)."""
        me = self._me()
        f = me.fds.get(fd)
        view = _user_bytes(buf, n, "write")
        if not f.writable:
            raise Rv6Error(errno.EBADF, f"descriptor {fd} is not open for writing")
        if f.kind == INODE:
            if n == 0:
                return 0
            self.buf.np[:n] = view      # a lent vector cannot be lent on: the fs gets ours
            return self._fscall(self.fs.write, self._fsfd(f), self.buf, n)
        data = view.tobytes()
        r = f.obj.write(data)
        if r is WOULD_BLOCK and self._refresh():
            r = f.obj.write(data)
        if r is WOULD_BLOCK:
            self._wait_on(f.obj, me)
            return None
        if r:
            self._wake(f.obj)  # data for its readers (and, for a console, its terminal)
        return r

    def close(self, fd: int) -> None:
        me = self._me()
        f = me.fds.take(fd)
        if self.files.close(f):
            self._release([f])

    def dup(self, fd: int) -> int:
        return self._me().fds.dup(fd)

    def dup2(self, old: int, new: int) -> int:
        me = self._me()
        new, prev = me.fds.dup2(old, new)
        if prev is not None and self.files.close(prev):
            self._release([prev])
        return new

    def pipe(self) -> tuple[int, int]:
        me = self._me()
        p = Pipe()
        r = self.files.open(OpenFile(PIPE, True, False, obj=p, path="pipe"))
        try:
            w = self.files.open(OpenFile(PIPE, False, True, obj=p, path="pipe"))
        except Rv6Error:
            self.files.close(r)
            raise
        fds = []
        try:
            for f in (r, w):
                fds.append(me.fds.install(f))
        except Rv6Error:
            for fd in fds:
                me.fds.take(fd)
            for f in (r, w):
                self.files.close(f)
            raise
        return fds[0], fds[1]

    def fstat(self, fd: int) -> StatTuple:
        f = self._me().fds.get(fd)
        if f.kind == INODE:
            return _stat_from_fs(self._fscall(self.fs.fstat, self._fsfd(f)))
        if f.kind == PIPE:
            return (T_PIPE, 0, 1, len(f.obj.buf), 0o600, 0)
        return (T_DEV, 0, 1, 0, 0o666, 0)

    def stat(self, path: str) -> StatTuple:
        me = self._me()
        return _stat_from_fs(self._fscall(self.fs.stat, kpath.resolve(me.cwd, path)))

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        f = self._me().fds.get(fd)
        _int(offset, "offset", -_MAX_OFF, _MAX_OFF)
        _int(whence, "whence", 0, 2)
        if f.kind != INODE:
            raise Rv6Error(errno.ESPIPE, f"descriptor {fd} is a {f.kind}, which has no position")
        return self._fscall(self.fs.seek, self._fsfd(f), offset, whence)

    def _path(self, path: str) -> str:
        return kpath.resolve(self._me().cwd, path)

    def link(self, old: str, new: str) -> None:
        me = self._me()
        self._fscall(self.fs.link, kpath.resolve(me.cwd, old), kpath.resolve(me.cwd, new))

    def unlink(self, path: str) -> None:
        self._fscall(self.fs.unlink, self._path(path))

    def mkdir(self, path: str) -> None:
        self._fscall(self.fs.mkdir, self._path(path), 0o755)

    def rmdir(self, path: str) -> None:
        full = self._path(path)
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if last == ".":     # as POSIX: the directory is removed by its name in its parent
            raise Rv6Error(errno.EINVAL, f"rmdir {path!r}: a path ending in '.' cannot be removed; name it from its parent")
        if last == "..":
            raise Rv6Error(errno.ENOTEMPTY, f"rmdir {path!r}: '..' is not empty (it holds this directory)")
        if full == "/":
            raise Rv6Error(errno.EBUSY, "the root directory cannot be removed")
        self._fscall(self.fs.rmdir, full)

    def rename(self, old: str, new: str) -> None:
        me = self._me()
        self._fscall(self.fs.rename, kpath.resolve(me.cwd, old), kpath.resolve(me.cwd, new))

    def mknod(self, path: str, major: int, minor: int) -> None:
        _int(major, "major", 0, 0xFFF)
        _int(minor, "minor", 0, 0xFFFFF)
        self._fscall(self.fs.mknod, self._path(path), st.S_IFCHR | 0o666, major, minor)

    def chdir(self, path: str) -> None:
        me = self._me()
        full = kpath.resolve(me.cwd, path)
        t = self._fscall(self.fs.stat, full)
        if not st.S_ISDIR(t[1]):
            raise Rv6Error(errno.ENOTDIR, f"{full} is not a directory")
        me.cwd = full

    def getcwd(self) -> str:
        return self._me().cwd

    def readdir(self, path: str, cookie: int) -> tuple[bytes, int]:
        full = self._path(path)
        _int(cookie, "cookie", 0, _MAX_OFF)
        page, nxt = self._fscall(self.fs.readdir, full, cookie)
        ents = [[name, ino, _ST_TYPE.get(mode, 0)] for name, ino, mode in msgpack.unpackb(page)]
        return msgpack.packb(ents), nxt

    # ------------------------------------------------------------------ a terminal's console
    def _session(self) -> Proc:
        me = self._me()
        if not me.session:
            raise Rv6Error(errno.ENOTTY, "only an attached terminal's session feeds and drains its console")
        return me

    def console_input(self, data: bytes) -> int:
        me = self._session()
        took = me.console.feed(data)
        if took < len(data):
            self._wait_on(me.console, me)
        self._wake(me.console)
        return took

    def console_eof(self) -> None:
        me = self._session()
        me.console.send_eof()
        self._wake(me.console)

    def console_output(self, n: int) -> bytes:
        _int(n, "count", 0, MAX_RW)
        me = self._session()
        data = me.console.drain(n)
        if data:
            self._wake(me.console)  # room for its writers
        else:
            self._wait_on(me.console, me)  # rung when a program writes
        return data

    def console_interrupt(self, spare_children: bool) -> int:
        """The terminal's ^C: kill every running descendant of the session (sparing its
        direct children, e.g. the shell, if asked); how many were killed. Without
        process groups this is the nearest thing to SIGINT of the foreground job."""
        me = self._session()
        victims, frontier = [], [(c, 1) for c in sorted(me.children)]
        while frontier:
            pid, depth = frontier.pop()
            p = self.ptable.procs.get(pid)
            if p is None:
                continue
            frontier.extend((c, depth + 1) for c in sorted(p.children))
            if p.state == RUNNING and not (spare_children and depth == 1):
                victims.append(p)
        for p in victims:
            self._kill(p)
        return len(victims)

    def shutdown(self) -> None:
        """A clean stop: the programs die with this domain (the supervisor kills them);
        close what the fs holds for us."""
        for f in list(self.files.files):
            if f.kind == INODE:
                try:
                    self.fs.close(self._fsfd(f))
                except (FsError, RpcError, Rv6Error):
                    pass
