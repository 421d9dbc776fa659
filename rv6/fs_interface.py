"""The `FileSystem` interface Rv6's fs domain exports (in the spirit of RedLeaf's UsrVFS).

Owns: the interface and what crosses it. Calls: the domain runtime's @interface only.

Paths are absolute (`/a/b`); every method is one call. Data moves as RRefs, never as
copies: `read`/`pread` take a caller's byte vector (`RRefVec` of uint8) moved in, fill its
first n bytes and move it back with the count; `write`/`pwrite` borrow the caller's
vector for the call and write its first n bytes. A call moves up to MAX_IO bytes (1 MiB),
so a large transfer is one call. Errors are the declared `FsError` (rv6/fs/errors.py): an
OSError carrying a POSIX errno (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENOSPC, EBADF,
EINVAL, ENAMETOOLONG, EMFILE, EXDEV, EIO, ...) and a message; a bad path or handle never
panics the domain. Stat results are tuples in `os.stat_result`'s field order as listed in
STAT_FIELDS; `statfs` in STATFS_FIELDS. `readdir` pages: each call returns up to a page
of entries encoded as msgpack [[name, ino, type], ...] and the cookie of the next page
(0 when done), because a directory can hold more than one inline value may carry.
"""

from __future__ import annotations

from redleaf.domains import Borrow, interface, raises
from redleaf.shared_heap import RRefVec

from .fs.errors import FsError

MAX_IO = 1 << 20
STAT_FIELDS = ("st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_blksize",
               "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_rdev")
STATFS_FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                 "f_favail", "f_namemax")

StatTuple = tuple[int, int, int, int, int, int, int, int, int, int, int, int]
StatFsTuple = tuple[int, int, int, int, int, int, int, int, int]


@interface(timeout_s=30.0)
class FileSystem:
    @raises(FsError)
    def open(self, path: str, flags: int, mode: int) -> int: ...
    @raises(FsError)
    def close(self, fd: int) -> None: ...
    @raises(FsError)
    def read(self, fd: int, buf: RRefVec, n: int) -> tuple[int, RRefVec]: ...
    @raises(FsError)
    def pread(self, fd: int, buf: RRefVec, n: int, offset: int) -> tuple[int, RRefVec]: ...
    @raises(FsError)
    def write(self, fd: int, buf: Borrow[RRefVec], n: int) -> int: ...
    @raises(FsError)
    def pwrite(self, fd: int, buf: Borrow[RRefVec], n: int, offset: int) -> int: ...
    @raises(FsError)
    def seek(self, fd: int, offset: int, whence: int) -> int: ...
    @raises(FsError)
    def fstat(self, fd: int) -> StatTuple: ...
    @raises(FsError)
    def stat(self, path: str) -> StatTuple: ...
    @raises(FsError)
    def mkdir(self, path: str, mode: int) -> None: ...
    @raises(FsError)
    def mknod(self, path: str, mode: int, major: int, minor: int) -> None: ...
    @raises(FsError)
    def link(self, old: str, new: str) -> None: ...
    @raises(FsError)
    def unlink(self, path: str) -> None: ...
    @raises(FsError)
    def rmdir(self, path: str) -> None: ...
    @raises(FsError)
    def rename(self, old: str, new: str) -> None: ...
    @raises(FsError)
    def readdir(self, path: str, cookie: int) -> tuple[bytes, int]: ...
    @raises(FsError)
    def truncate(self, path: str, size: int) -> None: ...
    @raises(FsError)
    def ftruncate(self, fd: int, size: int) -> None: ...
    @raises(FsError)
    def fsync(self, fd: int) -> None: ...
    @raises(FsError)
    def sync(self) -> None: ...
    @raises(FsError)
    def statfs(self) -> StatFsTuple: ...
    @raises(FsError)
    def chmod(self, path: str, mode: int) -> None: ...
    @raises(FsError)
    def utimens(self, path: str, atime_ns: int, mtime_ns: int) -> None: ...
