"""A domain that calls Echo from inside an instance: the caller side of the
placement tests (tests/domains/test_colocated.py).  Put in Echo's group it calls
through the co-located transport, in its own process through a channel; the
facts it reports are what the tests compare.

May call: domains (interface), shared_heap, the Echo interface."""

from __future__ import annotations

import numpy as np

from redleaf.domains import DomainCrashed, interface
from redleaf.domains.builtin.echo import Echo, NotFound
from redleaf.shared_heap import OwnershipError


@interface
class Probe:
    def ids(self) -> tuple[int, int]: ...
    def null(self) -> int: ...
    def inc(self, x: int) -> int: ...
    def rref(self, n: int) -> tuple[int, int]: ...
    def borrow(self, n: int) -> tuple[int, bool, int]: ...
    def move(self) -> tuple[int, int, str]: ...
    def declared(self) -> str: ...
    def crash_callee(self) -> str: ...
    def keep_own(self, n: int, byte: int) -> int: ...
    def own_sum(self) -> int: ...


def _owner(heap, slot: int) -> int:
    """The owner field of a record, as the heap holds it (not as a handle claims)."""
    return int(heap.record(slot)[3])


class ProbeDomain(Probe):
    def __init__(self, ctx):
        self.ctx = ctx
        self.echo = ctx.use("echo", Echo)
        self.mine = None

    def ids(self):
        return self.ctx.domain_id, self.echo._rl_link.peer_for_call()

    def null(self):
        self.echo.null()
        return 1

    def inc(self, x):
        return self.echo.inc(x)

    def rref(self, n):
        """Move a vector to Echo and get it back: (sum, owner of the returned handle)."""
        v = self.ctx.heap.alloc_vec(np.uint8, n)
        v.np[:] = 2
        back = self.echo.roundtrip(v)
        out = int(back.np.sum()), _owner(self.ctx.heap, back.slot)
        back.drop()
        return out

    def borrow(self, n):
        """Lend a vector: (its checksum seen by Echo, still alive here, its owner)."""
        v = self.ctx.heap.alloc_vec(np.uint8, n)
        v.np[:] = 1
        s = self.echo.checksum(v)
        out = s, v.alive, _owner(self.ctx.heap, v.slot)
        v.drop()
        return out

    def move(self):
        """Give a vector to Echo for good: (its owner after the move, Echo's sum of
        what it keeps, what using the dead handle raises)."""
        v = self.ctx.heap.alloc_vec(np.uint8, 64)
        v.np[:] = 3
        slot = v.slot
        self.echo.keep(v)
        try:
            v.np
            err = "none"
        except OwnershipError as e:
            err = type(e).__name__
        return _owner(self.ctx.heap, slot), self.echo.kept_sum(), err

    def declared(self):
        try:
            self.echo.get("missing")
        except NotFound:
            return "NotFound"
        return "none"

    def crash_callee(self):
        try:
            self.echo.crash()
        except DomainCrashed:
            return "DomainCrashed"
        return "none"

    def keep_own(self, n, byte):
        self.mine = self.ctx.heap.alloc_vec(np.uint8, n)
        self.mine.np[:] = byte
        return self.mine.slot

    def own_sum(self):
        return int(self.mine.np.sum())
