"""The bottom layer: the block-device protocol every layer above talks to, and two
devices. It calls nothing of the file system but its errors.

A device has `nblocks` blocks of BSIZE bytes; `read_block`/`write_block` move whole blocks
and `flush` makes every write issued before it durable; `read_blocks`/`write_blocks` are
the same for a batch (a batched device serves one in one doorbell). Writes between two flushes may
reach the medium in any order and a crash may keep any subset of them: that is the model
the log is written against and the one `MemDisk`'s recording lets tests replay.

- `MemDisk`: in memory and sparse (a dict of the blocks ever written, so a 1 GiB-capable
  device costs only what is written); with `record=True` it keeps the stream of writes and
  flushes, and `crash_image` rebuilds what a crash at any point could leave.
- `FileDisk`: an image file (sparse-friendly: unwritten blocks read as zeros), flush is
  fsync. The FileSystem domain adapts a BDev/NvmeBDev to the same protocol.
"""

from __future__ import annotations

import os
from typing import Iterable, Protocol

from .errors import DiskError
from .format import BSIZE

ZERO = bytes(BSIZE)


class BlockDevice(Protocol):
    nblocks: int

    def read_block(self, bno: int) -> bytes: ...
    def read_blocks(self, bnos: list[int], into, rows: list[int]) -> None: ...
    def write_block(self, bno: int, data: bytes) -> None: ...
    def write_blocks(self, items: Iterable[tuple[int, bytes]]) -> None: ...
    def flush(self) -> None: ...


class _Checked:
    nblocks: int

    def _check(self, bno: int, data: bytes | None = None) -> None:
        if not 0 <= bno < self.nblocks:
            raise DiskError(f"block {bno} is outside the device (0..{self.nblocks - 1})")
        if data is not None and len(data) != BSIZE:
            raise DiskError(f"a block write must be {BSIZE} bytes, got {len(data)}")

    def read_blocks(self, bnos: list[int], into, rows: list[int]) -> None:
        """A batch of reads (one doorbell on a batched device): block bnos[i] into row
        rows[i] of `into` (a 2-D uint8 array of BSIZE columns)."""
        for bno, r in zip(bnos, rows):
            into[r] = memoryview(self.read_block(bno))

    def write_blocks(self, items: Iterable[tuple[int, bytes]]) -> None:
        """A batch of writes (one doorbell on a batched device); no order is promised."""
        for bno, data in items:
            self.write_block(bno, data)


class MemDisk(_Checked):
    """A sparse in-memory device. `events` (when recording) holds ("w", bno, bytes) and
    ("f",) in issue order."""

    def __init__(self, nblocks: int, blocks: dict[int, bytes] | None = None, record: bool = False):
        self.nblocks = nblocks
        self.blocks: dict[int, bytes] = dict(blocks or {})
        self.events: list[tuple] | None = [] if record else None
        self.reads = self.writes = self.flushes = 0

    def read_block(self, bno: int) -> bytes:
        self._check(bno)
        self.reads += 1
        return self.blocks.get(bno, ZERO)

    def write_block(self, bno: int, data: bytes) -> None:
        self._check(bno, data)
        data = bytes(data)
        self.writes += 1
        self.blocks[bno] = data
        if self.events is not None:
            self.events.append(("w", bno, data))

    def flush(self) -> None:
        self.flushes += 1
        if self.events is not None:
            self.events.append(("f",))

    def start_recording(self) -> dict[int, bytes]:
        """Forget earlier events and return the image as it is now (the crash base)."""
        self.events = []
        return dict(self.blocks)

    @staticmethod
    def crash_image(base: dict[int, bytes], events: list[tuple], upto: int,
                    extra: Iterable[int] = ()) -> dict[int, bytes]:
        """The image after events[:upto] all reached the medium, plus the writes at the
        event indices `extra` (writes issued later that happened to persist), applied in
        issue order."""
        img = dict(base)
        for ev in events[:upto]:
            if ev[0] == "w":
                img[ev[1]] = ev[2]
        for i in sorted(extra):
            ev = events[i]
            assert ev[0] == "w" and i >= upto
            img[ev[1]] = ev[2]
        return img


class FileDisk(_Checked):
    """A device over an image file; blocks past the end of a short file read as zeros."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = os.fspath(path)
        self.readonly = readonly
        try:
            self.fd = os.open(self.path, os.O_RDONLY if readonly else os.O_RDWR)
        except OSError as e:
            raise DiskError(f"cannot open image {self.path}: {e.strerror}") from e
        self.nblocks = os.fstat(self.fd).st_size // BSIZE

    def read_block(self, bno: int) -> bytes:
        self._check(bno)
        data = os.pread(self.fd, BSIZE, bno * BSIZE)
        return data if len(data) == BSIZE else data.ljust(BSIZE, b"\0")

    def write_block(self, bno: int, data: bytes) -> None:
        self._check(bno, data)
        if self.readonly:
            raise DiskError(f"image {self.path} is open read-only")
        if os.pwrite(self.fd, data, bno * BSIZE) != BSIZE:
            raise DiskError(f"short write to block {bno} of {self.path}")

    def flush(self) -> None:
        if not self.readonly:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "FileDisk":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
