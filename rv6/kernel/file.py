"""Open files and descriptors: the global open-file table and per-process fd tables.

Owns: `OpenFile` (kind, access, reference count, what it refers to), the global table
of them, and `FdTable` (a process's descriptors). Calls only errors.py. As in xv6,
descriptors in any number of processes (after spawn's inheritance, dup, dup2) may
share one OpenFile, and so its offset; the object it refers to (an fs descriptor, a
pipe end, a console) is released when the last reference closes: `FileTable.close`
says so by returning True, and the kernel then closes the fs descriptor or the pipe
end. Nothing here does I/O.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from .errors import Rv6Error

#: descriptors per process (xv6 has 16)
NOFILE = 32
#: open files in the whole system (xv6's NFILE is 100)
NFILE = 4096

INODE, PIPE, CONSOLE = "inode", "pipe", "console"


@dataclass(eq=False)
class OpenFile:
    kind: str  # INODE | PIPE | CONSOLE
    readable: bool
    writable: bool
    obj: object = None  # INODE: the fs descriptor (int); PIPE: the Pipe; CONSOLE: the Console
    path: str = ""
    ref: int = 1
    append: bool = False
    extra: dict = field(default_factory=dict)


class FileTable:
    """Every open file of the system, with its reference count."""

    def __init__(self, limit: int = NFILE):
        self.limit = limit
        self.files: set[OpenFile] = set()

    def open(self, f: OpenFile) -> OpenFile:
        if len(self.files) >= self.limit:
            raise Rv6Error(errno.ENFILE, f"the system's open-file table is full ({self.limit} files)")
        f.ref = 1
        self.files.add(f)
        return f

    def dup(self, f: OpenFile) -> OpenFile:
        if f not in self.files or f.ref <= 0:
            raise AssertionError("dup of a file that is not open")
        f.ref += 1
        return f

    def close(self, f: OpenFile) -> bool:
        """Drop one reference; True when it was the last (release what f refers to)."""
        if f not in self.files or f.ref <= 0:
            raise AssertionError("close of a file that is not open")
        f.ref -= 1
        if f.ref == 0:
            self.files.discard(f)
            return True
        return False


def check_fd(fd) -> int:
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise Rv6Error(errno.EBADF, f"{fd!r} is not a file descriptor")
    return fd


class FdTable:
    """One process's descriptors: slot i holds an OpenFile or None."""

    def __init__(self, files: FileTable, size: int = NOFILE):
        self.files = files
        self.slots: list[OpenFile | None] = [None] * size

    def get(self, fd) -> OpenFile:
        check_fd(fd)
        if fd >= len(self.slots) or self.slots[fd] is None:
            raise Rv6Error(errno.EBADF, f"descriptor {fd} is not open")
        return self.slots[fd]

    def install(self, f: OpenFile) -> int:
        """Put an already counted reference in the lowest free slot."""
        for i, s in enumerate(self.slots):
            if s is None:
                self.slots[i] = f
                return i
        raise Rv6Error(errno.EMFILE, f"all {len(self.slots)} descriptors of this process are open")

    def close(self, fd) -> bool:
        """Close descriptor fd; True when its OpenFile lost its last reference."""
        f = self.get(fd)
        self.slots[fd] = None
        return self.files.close(f)

    def take(self, fd) -> OpenFile:
        """Remove fd's slot and hand its reference to the caller (who must close it)."""
        f = self.get(fd)
        self.slots[fd] = None
        return f

    def dup(self, fd) -> int:
        f = self.get(fd)
        new = self.install(f)
        self.files.dup(f)
        return new

    def dup2(self, old, new) -> tuple[int, OpenFile | None]:
        """Make `new` refer to old's file. Returns (new, the file `new` held before, whose
        reference the caller must close, or None)."""
        f = self.get(old)
        check_fd(new)
        if new >= len(self.slots):
            raise Rv6Error(errno.EBADF, f"descriptor {new} is beyond this process's {len(self.slots)}")
        if new == old:
            return new, None
        prev = self.slots[new]
        self.files.dup(f)
        self.slots[new] = f
        return new, prev

    def inherit(self, parent: "FdTable", fds: list | None) -> None:
        """Fill this (new, empty) table from the parent's: fds None = the parent's 0, 1, 2
        (those open); else child fd i = parent fd fds[i] (a negative entry: leave i closed)."""
        if fds is None:
            fds = [i if i < len(parent.slots) and parent.slots[i] is not None else -1 for i in range(3)]
        if not isinstance(fds, (list, tuple)):
            raise Rv6Error(errno.EINVAL, "fds is a list of the parent's descriptors")
        if len(fds) > len(self.slots):
            raise Rv6Error(errno.EMFILE, f"fds names {len(fds)} descriptors; a process has {len(self.slots)}")
        chosen = []
        for i, pfd in enumerate(fds):
            if isinstance(pfd, int) and not isinstance(pfd, bool) and pfd < 0:
                continue
            chosen.append((i, parent.get(pfd)))  # EBADF before anything is counted
        for i, f in chosen:
            self.files.dup(f)
            self.slots[i] = f

    def close_all(self) -> list[OpenFile]:
        """Close every descriptor; the files that lost their last reference."""
        last = []
        for i, f in enumerate(self.slots):
            if f is not None:
                self.slots[i] = None
                if self.files.close(f):
                    last.append(f)
        return last

    def open_fds(self) -> list[int]:
        return [i for i, f in enumerate(self.slots) if f is not None]
