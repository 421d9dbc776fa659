"""Fixtures for the pure fs layers: in-memory devices, a fake clock, mounted file systems."""

from __future__ import annotations

import itertools

import pytest

from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.mkfs import mkfs_device


class Clock:
    """A clock the test moves: every reading is 1 µs after the last (times stamp in order)."""

    def __init__(self, start: int = 1_700_000_000 * 10**9):
        self._c = itertools.count(start, 1000)
        self.last = start

    def __call__(self) -> int:
        self.last = next(self._c)
        return self.last


def new_disk(nblocks: int = 2048, inodes: int = 256, log_blocks: int | None = None,
             record: bool = False) -> MemDisk:
    d = MemDisk(nblocks, record=record)
    mkfs_device(d, inodes=inodes, log_blocks=log_blocks, now_ns=1, zeroed=True)
    return d


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def disk() -> MemDisk:
    return new_disk()


@pytest.fixture
def fs(disk, clock) -> FileSystem:
    f = FileSystem(disk, clock)
    yield f
    if f.mounted and not f.log.failed:
        f.unmount()
