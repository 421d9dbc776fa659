"""Open files (xv6's file.c): descriptors, offsets, access flags, and the splitting of
large transfers into log-sized operations. Calls the inode layer and the log.

`FdTable` hands out the lowest free descriptor (POSIX), up to `max_open` (EMFILE). An
`OpenFile` holds its inode (which counts the reference, so an unlinked file lives until
its last close), its offset and its flags.

Writes are cut into operations of at most WRITE_BLOCKS_PER_OP blocks, xv6's filewrite
arithmetic over 4 KiB blocks: one chunk of k blocks' worth of bytes touches at most k + 1
file blocks when unaligned; each may be newly allocated (data block + its bitmap block);
the index blocks on the way (indirect, double-indirect and up to two of its children,
each with its bitmap block) add 8 and the inode 1:

    2 (k + 1) + 8 + 1 <= MAXOPBLOCKS   =>   k = (MAXOPBLOCKS - 11) // 2 = 26 blocks

so a 1 MiB write is ten operations, grouped into a few transactions. A crash between them
may keep a prefix of the write, as with xv6 and with POSIX write(2) to a regular file.
Shrinking frees at most TRUNC_BUDGET blocks an operation (each dirties a bitmap block; six
other blocks may change, see Inodes.shrink_step).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from .errors import FsError
from .format import BSIZE, MAXFILE, MAXOPBLOCKS, T_DIR, T_FILE
from .inode import Inode, Inodes
from .log import Log

WRITE_BLOCKS_PER_OP = (MAXOPBLOCKS - 11) // 2
MAX_WRITE_PER_OP = WRITE_BLOCKS_PER_OP * BSIZE
TRUNC_BUDGET = MAXOPBLOCKS - 8

ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR


@dataclass
class OpenFile:
    ip: Inode
    readable: bool
    writable: bool
    append: bool
    offset: int = 0


class FdTable:
    def __init__(self, max_open: int):
        self.max_open = max_open
        self.files: dict[int, OpenFile] = {}

    def alloc(self, f: OpenFile) -> int:
        for fd in range(self.max_open):
            if fd not in self.files:
                self.files[fd] = f
                return fd
        raise FsError(errno.EMFILE, f"all {self.max_open} file descriptors are open")

    def get(self, fd: int) -> OpenFile:
        f = self.files.get(fd) if isinstance(fd, int) else None
        if f is None:
            raise FsError(errno.EBADF, f"{fd!r} is not an open file descriptor")
        return f

    def pop(self, fd: int) -> OpenFile:
        f = self.get(fd)
        del self.files[fd]
        return f


def access(flags: int) -> tuple[bool, bool]:
    mode = flags & ACCMODE
    if mode == os.O_RDONLY:
        return True, False
    if mode == os.O_WRONLY:
        return False, True
    if mode == os.O_RDWR:
        return True, True
    raise FsError(errno.EINVAL, f"open flags {flags:#o}: the access mode is not one of "
                                "O_RDONLY, O_WRONLY, O_RDWR")


class Files:
    def __init__(self, inodes: Inodes, log: Log):
        self.inodes = inodes
        self.log = log

    def write(self, ip: Inode, off: int, data, now: int) -> int:
        """Write all of `data` at `off`, in as many operations as it takes; returns the
        bytes written (short only if the device filled up)."""
        if ip.d.type == T_DIR:
            raise FsError(errno.EISDIR, f"inode {ip.inum} is a directory")
        if ip.d.type != T_FILE:
            raise FsError(errno.ENODEV, f"inode {ip.inum} is a device file; its I/O goes to its driver")
        if off < 0:
            raise FsError(errno.EINVAL, f"negative offset {off}")
        mv = memoryview(data).cast("B")
        done = 0
        while done < len(mv):   # a write of 0 bytes changes nothing, times included (POSIX)
            # each chunk ends on a block boundary, so it touches at most k blocks
            chunk = mv[done:done + MAX_WRITE_PER_OP - (off + done) % BSIZE]
            try:
                with self.log.op():
                    n = self.inodes.writei(ip, off + done, chunk)
                    ip.d.mtime = ip.d.ctime = now
                    self.inodes.iupdate(ip)
            except FsError as e:
                if e.errno == errno.ENOSPC and done:
                    break       # a short write, as write(2) reports a full disk part way
                raise
            done += n
            if n < len(chunk):
                break
        return done

    def readinto(self, ip: Inode, off: int, out: memoryview) -> int:
        if ip.d.type == T_DIR:
            raise FsError(errno.EISDIR, f"inode {ip.inum} is a directory")
        if ip.d.type != T_FILE:
            raise FsError(errno.ENODEV, f"inode {ip.inum} is a device file; its I/O goes to its driver")
        if off < 0:
            raise FsError(errno.EINVAL, f"negative offset {off}")
        return self.inodes.readinto(ip, off, out)

    def truncate(self, ip: Inode, size: int, now: int) -> None:
        """Set the size: growing leaves a hole, shrinking frees blocks over as many
        operations as it takes (each within the log)."""
        if ip.d.type == T_DIR:
            raise FsError(errno.EISDIR, f"inode {ip.inum} is a directory")
        if ip.d.type != T_FILE:
            raise FsError(errno.EINVAL, f"inode {ip.inum} is not a regular file")
        if not 0 <= size <= MAXFILE:
            raise FsError(errno.EINVAL if size < 0 else errno.EFBIG,
                          f"size {size} is outside 0..{MAXFILE}")
        if size == ip.d.size:
            return              # POSIX: the times change only if the size does
        if size > ip.d.size:
            with self.log.op():
                ip.d.size = size
                ip.d.mtime = ip.d.ctime = now
                self.inodes.iupdate(ip)
            return
        done = False
        while not done:
            with self.log.op():
                done = self.inodes.shrink_step(ip, size, TRUNC_BUDGET)
                ip.d.mtime = ip.d.ctime = now
                self.inodes.iupdate(ip)

    def release(self, ip: Inode) -> None:
        """Free an inode whose last link and last holder are gone: its blocks over as many
        operations as it takes, then the inode."""
        while True:
            with self.log.op():
                if self.inodes.shrink_step(ip, 0, TRUNC_BUDGET):
                    self.inodes.ifree(ip)
                    return
