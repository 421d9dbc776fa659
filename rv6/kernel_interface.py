"""`Rv6Sys`: the system-call interface Rv6's kernel domain exports to user programs.

Owns: the interface and what crosses it; the Rv6 constants of the user API contract
(open flags, file types, whence). Calls: the domain runtime's @interface only.

One method per system call of the contract (rv6/ulib.py is the user's face of it), plus
what the user host and a terminal need: `exec_image` (a spawned program fetches its own
source, which the kernel read at spawn), `console_*` (an attached terminal, `redleaf sh`,
feeds and drains its console, and `console_interrupt` is its ^C: it kills the session's
descendants, sparing its direct children (the shell) if asked), `procs` (the process table, for ps and tests: msgpack
of [pid, ppid, state, name, domain id (0: none)] each).

Who calls is never an argument: the kernel knows each caller by the domain id the
supervisor bound to the call's channel (a spawned program is the process spawn made
for its domain; an attached client gets a session process of its own).

Nothing here blocks. A call that cannot finish yet answers "not yet" and the caller
retries: `wait` returns None, `read` a count of -1 (with the caller's buffer back),
`write` None (and `console_output` b""). Data moves as RRefs, as across `FileSystem`: a
read takes the caller's byte vector (RRefVec of uint8) moved in, fills its first n bytes
and moves it back with the count; a write borrows the caller's vector; up to MAX_IO
bytes a call. The kernel is one thread serving every process, so a call that waited
inside it would stop every other process; and a call held past its deadline would be
taken for a hang. Instead the kernel remembers who was told "not yet" about what (a
pipe, a console, its children) and rings that caller's doorbell when it may have
changed; the caller sleeps on its doorbell in between (ulib does, with a timeout as a
backstop), so a blocked program costs nothing while it waits and resumes at once. Errors are the declared `Rv6Error` (an OSError with a POSIX errno).
"""

from __future__ import annotations

from typing import Optional

from redleaf.domains import Borrow, interface, raises
from redleaf.shared_heap import RRefVec

from .kernel.errors import Rv6Error

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_EXCL = 0x80
O_CREATE = 0x200
O_TRUNC = 0x400
O_APPEND = 0x800
O_ALL = O_RDONLY | O_WRONLY | O_RDWR | O_EXCL | O_CREATE | O_TRUNC | O_APPEND
T_DIR, T_FILE, T_DEV = 1, 2, 3
#: fstat of a pipe end (not a file of the fs; not in xv6, which has no type for it)
T_PIPE = 4
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
#: the most bytes an inline value carries (console output, a program's image): 64 KiB is the limit
MAX_RW = 60 * 1024
#: the most bytes one read or write moves: the data goes in the caller's RRefVec of uint8
#: (moved in and back for a read, lent for a write), as with the FileSystem interface
MAX_IO = 1 << 20

#: Stat as it crosses: (type, ino, nlink, size, mode, mtime_ns)
StatTuple = tuple[int, int, int, int, int, int]


@interface(timeout_s=30.0)
class Rv6Sys:
    # --- processes
    @raises(Rv6Error)
    def spawn(self, path: str, argv: tuple[str, ...], fds: Optional[tuple[int, ...]]) -> int: ...
    @raises(Rv6Error)
    def exit(self, status: int) -> None: ...
    @raises(Rv6Error)
    def wait(self, pid: int) -> Optional[tuple[int, int]]: ...
    @raises(Rv6Error)
    def kill(self, pid: int) -> None: ...
    @raises(Rv6Error)
    def getpid(self) -> int: ...
    @raises(Rv6Error)
    def getppid(self) -> int: ...
    @raises(Rv6Error)
    def sleep(self, ms: int) -> int: ...
    @raises(Rv6Error)
    def uptime(self) -> int: ...
    @raises(Rv6Error)
    def exec_image(self, offset: int) -> bytes: ...
    @raises(Rv6Error)
    def procs(self) -> bytes: ...

    # --- files
    @raises(Rv6Error)
    def open(self, path: str, flags: int) -> int: ...
    @raises(Rv6Error)
    def read(self, fd: int, buf: RRefVec, n: int) -> tuple[int, RRefVec]: ...  # -1: not yet
    @raises(Rv6Error)
    def write(self, fd: int, buf: Borrow[RRefVec], n: int) -> Optional[int]: ...
    @raises(Rv6Error)
    def close(self, fd: int) -> None: ...
    @raises(Rv6Error)
    def dup(self, fd: int) -> int: ...
    @raises(Rv6Error)
    def dup2(self, old: int, new: int) -> int: ...
    @raises(Rv6Error)
    def pipe(self) -> tuple[int, int]: ...
    @raises(Rv6Error)
    def fstat(self, fd: int) -> StatTuple: ...
    @raises(Rv6Error)
    def stat(self, path: str) -> StatTuple: ...
    @raises(Rv6Error)
    def lseek(self, fd: int, offset: int, whence: int) -> int: ...
    @raises(Rv6Error)
    def link(self, old: str, new: str) -> None: ...
    @raises(Rv6Error)
    def unlink(self, path: str) -> None: ...
    @raises(Rv6Error)
    def mkdir(self, path: str) -> None: ...
    @raises(Rv6Error)
    def rmdir(self, path: str) -> None: ...
    @raises(Rv6Error)
    def rename(self, old: str, new: str) -> None: ...
    @raises(Rv6Error)
    def mknod(self, path: str, major: int, minor: int) -> None: ...
    @raises(Rv6Error)
    def chdir(self, path: str) -> None: ...
    @raises(Rv6Error)
    def getcwd(self) -> str: ...
    @raises(Rv6Error)
    def readdir(self, path: str, cookie: int) -> tuple[bytes, int]: ...

    # --- the terminal of an attached client's session
    @raises(Rv6Error)
    def console_input(self, data: bytes) -> int: ...
    @raises(Rv6Error)
    def console_eof(self) -> None: ...
    @raises(Rv6Error)
    def console_output(self, n: int) -> bytes: ...
    @raises(Rv6Error)
    def console_interrupt(self, spare_children: bool) -> int: ...
