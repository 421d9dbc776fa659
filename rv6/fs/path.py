"""Path lookup (xv6's namei/nameiparent). Calls the directory and inode layers.

A path is a str (encoded as the OS does, UTF-8 with surrogateescape, so any byte name a
FUSE caller hands in round-trips) or bytes. Absolute paths start at the root; relative
ones at the `cwd` inode. "." and ".." are looked up like any entry (each directory holds
both), so ".." of the root is the root. A path with a trailing slash must name a
directory. Errors: ENOENT (empty path or a missing component), ENOTDIR (a non-directory
in the middle), ENAMETOOLONG (a component over NAME_MAX or the path over PATH_MAX).
"""

from __future__ import annotations

import errno

from .dir import Dirs
from .errors import FsError
from .format import NAME_MAX, PATH_MAX, ROOTINO, T_DIR
from .inode import Inode, Inodes


def encode(path: str | bytes) -> bytes:
    if isinstance(path, str):
        try:
            return path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise FsError(errno.EINVAL, f"path {path!r} cannot be encoded") from e
    if isinstance(path, (bytes, bytearray, memoryview)):
        return bytes(path)
    raise FsError(errno.EINVAL, f"a path must be str or bytes, not {type(path).__name__}")


def split(path: str | bytes) -> tuple[bool, list[bytes], bool]:
    """(absolute?, components, trailing slash?)"""
    p = encode(path)
    if not p:
        raise FsError(errno.ENOENT, "empty path")
    if len(p) >= PATH_MAX:
        raise FsError(errno.ENAMETOOLONG, f"path of {len(p)} bytes; the limit is {PATH_MAX - 1}")
    if b"\0" in p:
        raise FsError(errno.EINVAL, f"path {p!r} contains a NUL byte")
    parts = [c for c in p.split(b"/") if c]
    for c in parts:
        if len(c) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, f"component {c[:20]!r}... of {path!r} is "
                                              f"{len(c)} bytes; the limit is {NAME_MAX}")
    return p.startswith(b"/"), parts, p.endswith(b"/")


class Paths:
    def __init__(self, inodes: Inodes, dirs: Dirs):
        self.inodes = inodes
        self.dirs = dirs

    def _walk(self, start: Inode, parts: list[bytes], path) -> Inode:
        ip = start
        for c in parts:
            if ip.d.type != T_DIR:
                raise FsError(errno.ENOTDIR, f"{path!r}: a component before {c!r} is not a directory")
            hit = self.dirs.lookup(ip, c)
            if hit is None:
                raise FsError(errno.ENOENT, f"{path!r}: no {c.decode('utf-8', 'replace')!r} there")
            ip = self.inodes.iget(hit[0])
        return ip

    def _start(self, absolute: bool, cwd: int) -> Inode:
        if not absolute and (not isinstance(cwd, int) or not 1 <= cwd < self.inodes.sb.ninodes):
            raise FsError(errno.EINVAL, f"cwd {cwd!r} is not an inode number of this file system")
        ip = self.inodes.iget(ROOTINO if absolute else cwd)
        if ip.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"cwd inode {cwd} is not a directory")
        return ip

    def namei(self, path: str | bytes, cwd: int = ROOTINO) -> Inode:
        absolute, parts, slash = split(path)
        ip = self._walk(self._start(absolute, cwd), parts, path)
        if slash and ip.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"{path!r} ends in '/' but is not a directory")
        return ip

    def nameiparent(self, path: str | bytes, cwd: int = ROOTINO) -> tuple[Inode, bytes | None, bool]:
        """(parent directory, last component, trailing slash?); the component is None for a
        path with none ("/"). The caller refuses "." and ".." where it must."""
        absolute, parts, slash = split(path)
        start = self._start(absolute, cwd)
        if not parts:
            return start, None, slash
        dp = self._walk(start, parts[:-1], path)
        if dp.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"{path!r}: the parent is not a directory")
        return dp, parts[-1], slash
