"""Directories (xv6's dirlookup/dirlink). Calls the inode layer and the format only.

A directory is a file of 64-byte entries (format.DIRENT): an inode number (0 = empty
slot) and a NUL-padded name of 1..NAME_MAX bytes. Every directory holds "." (itself) and
".." (its parent; the root's is itself). Adding an entry reuses the first empty slot or
appends; a directory never shrinks (as in xv6), and its size is always a whole number of
entries. The callers (fs.py) keep link counts; this layer keeps entries.

Entries read from disk are checked (inode number in range, a legal name) so a damaged
directory block is a CorruptionError, not a wrong lookup.

The name index (Linux's dcache, per directory): the first lookup in a directory scans it
once and keeps name -> (inode, offset) and its empty slots (smallest first, so a new
entry still takes the first empty slot as xv6's does); `add`, `set_inum`, `remove` and
`init` keep it equal to the blocks, and they are the only writers of directory entries.
So a lookup in a directory of 10,000 names is a dict probe, not a scan of 157 blocks,
and creating a file no longer scans for a slot. The index lives in memory only: a
remount (and with it a crash) starts without it.
"""

from __future__ import annotations

import errno
import heapq
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
        # directory inode -> (name -> (inode, offset), heap of empty slots' offsets)
        self._ix: dict[int, tuple[dict[bytes, tuple[int, int]], list[int]]] = {}

    def _index(self, dp: Inode) -> tuple[dict[bytes, tuple[int, int]], list[int]]:
        ix = self._ix.get(dp.inum)
        if ix is None:
            names: dict[bytes, tuple[int, int]] = {}
            free: list[int] = []
            for off, ents in self._blocks(dp):
                inums = ents["inum"]
                free += (off + np.flatnonzero(inums == 0) * DIRENT_SIZE).tolist()
                used = np.flatnonzero(inums)
                for i, name, inum in zip(used.tolist(), ents["name"][used].tolist(), inums[used].tolist()):
                    names.setdefault(name, (inum, off + i * DIRENT_SIZE))   # a damaged dup: the first wins, as a scan's would
            heapq.heapify(free)
            ix = self._ix[dp.inum] = (names, free)
        return ix

    def forget(self, inum: int) -> None:
        """Drop the index of a directory being freed."""
        self._ix.pop(inum, None)

    def clear(self) -> None:
        self._ix.clear()

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
        if dp.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"inode {dp.inum} is not a directory")
        hit = self._index(dp)[0].get(name)
        if hit is not None and hit[0] >= self.inodes.sb.ninodes:
            raise CorruptionError(f"directory {dp.inum} entry {name!r} names inode {hit[0]}, out of range")
        return hit

    def add(self, dp: Inode, name: bytes, inum: int) -> None:
        """Add entry `name` -> `inum` (the caller checked `name` is absent and legal)."""
        names, free = self._index(dp)
        slot = free[0] if free else dp.d.size
        if self.inodes.writei(dp, slot, pack_dirent(inum, name)) != DIRENT_SIZE:
            raise FsError(errno.ENOSPC, "no space to grow the directory")
        if free:
            heapq.heappop(free)
        names[name] = (inum, slot)

    def _name_at(self, dp: Inode, off: int) -> bytes:
        return bytes(np.frombuffer(self.inodes.readi(dp, off, DIRENT_SIZE), DIRENT)["name"][0])

    def set_inum(self, dp: Inode, off: int, inum: int) -> None:
        """Point the entry at `off` elsewhere (rename over a file, a moved dir's ..)."""
        names, _ = self._index(dp)
        name = self._name_at(dp, off)
        self.inodes.writei(dp, off, pack_dirent(inum, name))
        names[name] = (inum, off)

    def remove(self, dp: Inode, off: int) -> None:
        names, free = self._index(dp)
        name = self._name_at(dp, off)
        self.inodes.writei(dp, off, bytes(DIRENT_SIZE))
        if names.get(name, (0, -1))[1] == off:
            del names[name]
        heapq.heappush(free, off)

    def init(self, dp: Inode, parent: int) -> None:
        """Write "." and ".." into a new, empty directory."""
        data = pack_dirent(dp.inum, b".") + pack_dirent(parent, b"..")
        if self.inodes.writei(dp, 0, data) != len(data):
            raise FsError(errno.ENOSPC, "no space for the new directory's first block")
        self._ix[dp.inum] = ({b".": (dp.inum, 0), b"..": (parent, DIRENT_SIZE)}, [])

    def is_empty(self, dp: Inode) -> bool:
        return all(name in (b".", b"..") for _, name, _ in self.entries(dp))
