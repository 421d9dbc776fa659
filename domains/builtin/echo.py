"""Echo: a small domain the tests, the benchmarks and the default manifest use.

May call: domains (interface, raises, Borrow), shared_heap (handles, records)."""

from __future__ import annotations

import time

import numpy as np

from redleaf.domains import Borrow, interface, raises
from redleaf.shared_heap import RRef, RRefVec, record, u64


class NotFound(Exception):
    pass


@record
class Stamp:
    n: u64


@interface
class Echo:
    def null(self) -> None: ...
    def inc(self, x: int) -> int: ...
    def echo(self, data: bytes) -> bytes: ...
    def roundtrip(self, buf: RRefVec) -> RRefVec: ...
    def checksum(self, buf: Borrow[RRefVec]) -> int: ...
    def peek(self, buf: Borrow[RRefVec]) -> int: ...
    def hold(self, buf: Borrow[RRefVec], seconds: float) -> int: ...
    def fill(self, n: int, byte: int) -> RRefVec: ...
    @raises(NotFound)
    def get(self, key: str) -> str: ...
    def crash(self) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def call_back(self, target: str, x: int) -> int: ...
    def pair(self, buf: RRefVec, stamp: RRef[Stamp]) -> int: ...
    def pair_vecs(self, a: RRefVec, b: RRefVec) -> int: ...
    def keep(self, buf: RRefVec) -> int: ...
    def kept_sum(self) -> int: ...


class EchoDomain(Echo):
    """Implements Echo.  `crash` raises an undeclared exception: a panic."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.data = {"hello": "world"}
        self.kept: list[RRefVec] = []

    def null(self) -> None:
        return None

    def inc(self, x: int) -> int:
        return x + 1

    def echo(self, data: bytes) -> bytes:
        return data

    def roundtrip(self, buf: RRefVec) -> RRefVec:
        return buf

    def checksum(self, buf) -> int:
        return int(np.asarray(buf.np, dtype=np.uint8).sum(dtype=np.uint64))

    def peek(self, buf) -> int:
        return int(buf.buf[0])

    def hold(self, buf, seconds: float) -> int:
        """Keep a borrow for a while (the caller may die meanwhile), then read it."""
        time.sleep(seconds)
        return self.checksum(buf)

    def fill(self, n: int, byte: int) -> RRefVec:
        v = self.ctx.heap.alloc_vec(np.uint8, n)
        v.np[:] = byte
        return v

    def get(self, key: str) -> str:
        try:
            return self.data[key]
        except KeyError:
            raise NotFound(key) from None

    def crash(self) -> None:
        raise RuntimeError("Echo.crash() was called")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def call_back(self, target: str, x: int) -> int:
        """Re-entrancy: call `inc` on the Echo exported as `target` (possibly our caller)."""
        return self.ctx.lookup(target, Echo).inc(x) + 1

    def pair(self, buf: RRefVec, stamp) -> int:
        """Two moved arguments of different types: consumes both."""
        n = len(buf) + int(stamp["n"])
        buf.drop()
        stamp.drop()
        return n

    def pair_vecs(self, a: RRefVec, b: RRefVec) -> int:
        """Two moved vectors: consumes both."""
        n = len(a) + len(b)
        a.drop()
        b.drop()
        return n

    def keep(self, buf: RRefVec) -> int:
        """Keep the buffer as this domain's own state (as a driver keeps its buffers)."""
        self.kept.append(buf)
        return len(self.kept)

    def kept_sum(self) -> int:
        """The sum of every byte of the kept buffers (fails if one was taken from us)."""
        return sum(int(np.asarray(b.np, dtype=np.uint8).sum(dtype=np.uint64)) for b in self.kept)
