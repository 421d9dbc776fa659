"""Directories (xv6's dirlookup/dirlink). Calls the inode layer and the format only.

A directory is a file of 64-byte entries (format.DIRENT): an inode number (0 = empty
slot) and a NUL-padded name of 1..NAME_MAX bytes. Every directory holds "." (itself) and
".." (its parent; the root's is itself). Adding an entry reuses the first empty slot or
appends; a directory never shrinks (as in xv6), and its size is always a whole number of
entries. The callers (fs.py) keep link counts; this layer keeps entries.

Entries read from disk are checked (inode number in range, a legal name) so a damaged
directory block is a CorruptionError, not a wrong lookup.
"""

from __future__ import annotations

import errno
from typing import Iterator

import numpy as np

from .errors import CorruptionError, FsError
from .format import BSIZE, DIRENT, DIRENT_SIZE, NAME_MAX, T_DIR, pack_dirent
from .inode import Inode, Inodes


def check_name(name: bytes) -> None:
    """A name one may create: ENAMETOOLONG past NAME_MAX bytes, EINVAL if empty or with a
    '/' or NUL in it."""
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG, f"name {name[:20]!r}... is {len(name)} bytes; "
                                          f"Rv6 allows at most {NAME_MAX}")
    if not name or b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL, f"{name!r} is not a valid file name")


class Dirs:
    def __init__(self, inodes: Inodes):
        self.inodes = inodes

    def _blocks(self, dp: Inode) -> Iterator[tuple[int, np.ndarray]]:
        """(byte offset, entries) for each block of the directory."""
        if dp.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"inode {dp.inum} is not a directory")
        if dp.d.size % DIRENT_SIZE:
            raise CorruptionError(f"directory {dp.inum} has size {dp.d.size}, not a whole "
                                  f"number of {DIRENT_SIZE}-byte entries")
        for off in range(0, dp.d.size, BSIZE):
            # a directory has no holes: one would be damage, and refusing it keeps a bogus
            # 4 GiB directory size from costing a million empty reads
            bno = self.inodes.bmap(dp, off // BSIZE, alloc=False)
            if not bno:
                raise CorruptionError(f"directory {dp.inum} has a hole at byte {off}")
            with self.inodes.cache.block(bno) as b:
                raw = bytes(b.data[:min(BSIZE, dp.d.size - off)])
            yield off, np.frombuffer(raw, DIRENT)

    def entries(self, dp: Inode) -> Iterator[tuple[int, bytes, int]]:
        """(offset, name, inode number) of every used entry, checked."""
        n = self.inodes.sb.ninodes
        for off, ents in self._blocks(dp):
            for i in np.flatnonzero(ents["inum"]):
                inum = int(ents["inum"][i])
                name = bytes(ents["name"][i])
                if inum >= n or not name or b"/" in name or b"\0" in name:
                    raise CorruptionError(f"directory {dp.inum} has a damaged entry at byte "
                                          f"{off + int(i) * DIRENT_SIZE} (inode {inum}, name {name!r})")
                yield off + int(i) * DIRENT_SIZE, name, inum

    def lookup(self, dp: Inode, name: bytes) -> tuple[int, int] | None:
        """(inode number, entry offset) of `name` in `dp`, or None."""
        key = np.bytes_(name)
        n = self.inodes.sb.ninodes
        for off, ents in self._blocks(dp):
            hit = np.flatnonzero((ents["name"] == key) & (ents["inum"] != 0))
            if hit.size:
                i = int(hit[0])
                inum = int(ents["inum"][i])
                if inum >= n:
                    raise CorruptionError(f"directory {dp.inum} entry {name!r} names inode "
                                          f"{inum}, out of range")
                return inum, off + i * DIRENT_SIZE
        return None

    def add(self, dp: Inode, name: bytes, inum: int) -> None:
        """Add entry `name` -> `inum` (the caller checked `name` is absent and legal)."""
        slot = dp.d.size
        for off, ents in self._blocks(dp):
            free = np.flatnonzero(ents["inum"] == 0)
            if free.size:
                slot = off + int(free[0]) * DIRENT_SIZE
                break
        if self.inodes.writei(dp, slot, pack_dirent(inum, name)) != DIRENT_SIZE:
            raise FsError(errno.ENOSPC, "no space to grow the directory")

    def set_inum(self, dp: Inode, off: int, inum: int) -> None:
        """Point the entry at `off` elsewhere (rename over a file, a moved dir's ..)."""
        raw = self.inodes.readi(dp, off, DIRENT_SIZE)
        name = bytes(np.frombuffer(raw, DIRENT)["name"][0])
        self.inodes.writei(dp, off, pack_dirent(inum, name))

    def remove(self, dp: Inode, off: int) -> None:
        self.inodes.writei(dp, off, bytes(DIRENT_SIZE))

    def init(self, dp: Inode, parent: int) -> None:
        """Write "." and ".." into a new, empty directory."""
        data = pack_dirent(dp.inum, b".") + pack_dirent(parent, b"..")
        if self.inodes.writei(dp, 0, data) != len(data):
            raise FsError(errno.ENOSPC, "no space for the new directory's first block")

    def is_empty(self, dp: Inode) -> bool:
        return all(name in (b".", b"..") for _, name, _ in self.entries(dp))
