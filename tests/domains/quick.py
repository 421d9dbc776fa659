"""A domain whose interface has a short call deadline (1 s), for tests of what a
caller sees when its callee stalls or hangs past the deadline, without waiting the
default 10 s."""

from __future__ import annotations

from redleaf.domains import interface


@interface(timeout_s=1.0)
class Quick:
    def inc(self, x: int) -> int: ...


class QuickDomain(Quick):
    def __init__(self, ctx):
        pass

    def inc(self, x: int) -> int:
        return x + 1
