"""A domain whose declared errors come after it was moved objects (test_declared_errors.py)."""

from __future__ import annotations

from redleaf.domains import interface, raises
from redleaf.shared_heap import RRefVec


class Refused(Exception):
    pass


@interface
class Keeping:
    @raises(Refused)
    def refuse(self, buf: RRefVec, keep: bool) -> None: ...  # raises; keeps `buf` if asked
    def kept(self) -> int: ...                               # bytes summed over what it kept


class KeepingDomain(Keeping):
    def __init__(self, ctx):
        self.kept_bufs = []
        ctx.export(ctx.name, self, Keeping)

    def refuse(self, buf, keep: bool) -> None:
        if keep:
            self.kept_bufs.append(buf)
        raise Refused("no")

    def kept(self) -> int:
        return sum(int(b.np.sum()) for b in self.kept_bufs)  # raises if one was freed
