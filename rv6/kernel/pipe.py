"""Pipes: a bounded byte buffer with counted read and write ends.

Owns: one pipe's buffer and its end counts. Calls only errors.py. Blocking is a value:
`read` of an empty pipe with a writer left and `write` to a full pipe answer
WOULD_BLOCK, and the caller (the ulib loop) retries. EOF (b"") once the last writer
closed and the buffer is drained; EPIPE for a write once the last reader closed.
A write takes what fits and says how much (the ulib loop writes the rest), so a
write larger than the buffer cannot deadlock a reader that reads in small pieces.
"""

from __future__ import annotations

import errno

from .errors import WOULD_BLOCK, Rv6Error

PIPESIZE = 1 << 20  # one MAX_IO write fits whole


class Pipe:
    __slots__ = ("buf", "capacity", "readers", "writers")

    def __init__(self, capacity: int = PIPESIZE):
        if capacity <= 0:
            raise ValueError("a pipe holds at least one byte")
        self.buf = bytearray()
        self.capacity = capacity
        self.readers = 1
        self.writers = 1

    def read(self, n: int):
        """Up to n bytes, b"" at EOF, or WOULD_BLOCK."""
        if n < 0:
            raise Rv6Error(errno.EINVAL, f"read count {n} is negative")
        if n == 0:
            return b""
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        if self.writers == 0:
            return b""
        return WOULD_BLOCK

    def write(self, data: bytes):
        """How many bytes of `data` were taken (at least one), or WOULD_BLOCK when full."""
        if self.readers == 0:
            raise Rv6Error(errno.EPIPE, "write to a pipe with no reader left (the reading end is closed)")
        if not data:
            return 0
        room = self.capacity - len(self.buf)
        if room <= 0:
            return WOULD_BLOCK
        take = data[:room]
        self.buf += take
        return len(take)

    def add_reader(self) -> None:
        self.readers += 1

    def add_writer(self) -> None:
        self.writers += 1

    def close_reader(self) -> None:
        if self.readers <= 0:
            raise AssertionError("pipe reader closed more often than opened")
        self.readers -= 1
        if self.readers == 0:
            self.buf.clear()  # nobody can read it any more

    def close_writer(self) -> None:
        if self.writers <= 0:
            raise AssertionError("pipe writer closed more often than opened")
        self.writers -= 1
