"""A caller *domain* for the call, ownership and fault tests that must hold in both
placements (tests/domains/test_placed_calls.py, issue #17): loaded beside Echo either
in its own process (calls go over a channel) or in Echo's group (the co-located
transport, on one thread).  An attached client can never share a group, so the
tests drive this domain through its own interface and it makes the calls to Echo.

Its operations are the caller's side of each fact, reported as values the tests
check: what a call returned, which exception it raised (type and message), who owns
a record afterwards, and what the callee answered to a raw request no proxy would
send (`raw`: the payload is built by the test, exactly as the attached tests built
theirs, and sent through whichever link this placement gave the probe).

Objects the probe allocates for a test stay in `self.vecs` (by slot) until the test
moves them away, so the test can name them in forged requests and ask later whether
they are still the probe's.

May call: domains (interface, errors, the proxies it uses or looks up),
shared_heap (handles, records), the Echo, Keeping and Deferring interfaces."""

from __future__ import annotations

import time

import numpy as np

from redleaf.domains import BadArgument, DomainCrashed, RpcError, interface
from redleaf.domains.builtin.echo import Echo, NotFound, Stamp
from redleaf.shared_heap import OwnershipError
from tests.domains.deferring import Deferring
from tests.domains.keeping import Keeping, Refused


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:900]


@interface
class PlacedProbe:
    def ids(self) -> tuple[int, int]: ...
    def values(self) -> tuple[bool, int, bytes, str]: ...
    def declared(self, key: str) -> str: ...
    def bad_args(self) -> tuple[str, str, str, str, str]: ...
    def calls_made(self) -> int: ...
    def rref(self, n: int, byte: int) -> tuple[str, int, int, int, int, int]: ...
    def use_after_move(self) -> tuple[str, bool, bool]: ...
    def roundtrips(self, n: int) -> int: ...
    def fill(self, n: int, byte: int) -> str: ...
    def vec(self, n: int, byte: int) -> tuple[int, int]: ...
    def stamp(self) -> tuple[int, int]: ...
    def own(self, slot: int) -> tuple[bool, int, int]: ...
    def owner(self, slot: int) -> int: ...
    def give(self, target: str, slot: int) -> int: ...
    def kept_sum(self, target: str) -> int: ...
    def pair_vecs(self, a: int, b: int) -> str: ...
    def forged_type_pair(self) -> tuple[str, bool, bool, bool, int, str]: ...
    def raw(self, target: str, payload: bytes) -> tuple[int, bytes]: ...
    def crash_callee(self) -> str: ...
    def lend_and_hold(self, n: int, seconds: float) -> int: ...
    def drop_all(self) -> int: ...
    def refuse(self, target: str, n: int, byte: int, keep: bool) -> str: ...
    def kept(self, target: str) -> int: ...
    def deferred(self, target: str) -> tuple[float, float]: ...
    def deferred_fails(self, target: str) -> tuple[str, str]: ...


class PlacedProbeDomain(PlacedProbe):
    def __init__(self, ctx):
        self.ctx = ctx
        self.echo = ctx.use("echo", Echo)
        self.vecs: dict = {}
        self.others: dict = {}

    # -- helpers -------------------------------------------------------------------------
    def _target(self, name: str):
        if name == "echo":
            return self.echo
        if name not in self.others:  # a third party, looked up by name (not in `uses`)
            self.others[name] = self.ctx.lookup(name, Echo)
        return self.others[name]

    def _keep(self, h) -> tuple[int, int]:
        self.vecs[h.slot] = h
        return h.slot, h.gen

    # -- values and declared errors ---------------------------------------------------------
    def ids(self):
        return self.ctx.domain_id, self.echo._rl_link.peer_for_call()

    def values(self):
        e = self.echo
        return e.null() is None, e.inc(41), e.echo(b"abc"), e.get("hello")

    def declared(self, key):
        """What echo.get(key) raised, type and message, or its value."""
        try:
            return "value: " + self.echo.get(key)
        except NotFound as ex:
            return _err(ex)

    def bad_args(self):
        """The caller's own proxy refuses arguments the interface cannot carry, before
        anything is sent; a return value out of range is the caller's error too."""
        e, out = self.echo, []
        for call in (lambda: e.inc("nope"), lambda: e.inc(1, 2), lambda: e.echo(b"x" * (1 << 20)),
                     lambda: e.inc(1 << 64), lambda: e.inc((1 << 64) - 1)):
            try:
                call()
                out.append("no error")
            except BadArgument as ex:
                out.append(_err(ex))
        return tuple(out)

    def calls_made(self):
        return self.ctx.rt.calls_made

    # -- ownership ---------------------------------------------------------------------------
    def rref(self, n, byte):
        """Move a vector to Echo and back: (what the old handle raises, sum of the
        returned one, Echo's checksum of it lent, its owner, still ours after the
        borrow (1/0), sum of a vector Echo allocated and moved to us)."""
        heap = self.ctx.heap
        v = heap.alloc_vec(np.uint8, n)
        v.np[:] = byte
        back = self.echo.roundtrip(v)
        try:
            v.np
            dead = "none"
        except OwnershipError as ex:
            dead = _err(ex)
        total = int(back.np.sum(dtype=np.uint64))
        lent = self.echo.checksum(back)
        owner = int(heap.record(back.slot)[3])
        still = int(back.alive and int(back.np[0]) == byte)
        f = self.echo.fill(100, 3)
        filled = int(f.np.sum(dtype=np.uint64)) if bytes(f.buf) == b"\x03" * 100 else -1
        back.drop()
        f.drop()
        return dead, total, lent, owner, still, filled

    def use_after_move(self):
        """Pass a handle that an earlier call moved away: (the error, is it an
        OwnershipError, is it an RpcError)."""
        v = self.ctx.heap.alloc_vec(np.uint8, 8)
        back = self.echo.roundtrip(v)
        try:
            self.echo.roundtrip(v)
            out = ("no error", False, False)
        except RpcError as ex:
            out = (_err(ex), isinstance(ex, OwnershipError), True)
        except OwnershipError as ex:
            out = (_err(ex), True, False)
        back.drop()
        return out

    def roundtrips(self, n):
        """n back-to-back moves, each checked (value after the move, Echo's peek of it
        lent): the count that came back right."""
        v = self.ctx.heap.alloc_vec(np.uint8, 64)
        good = 0
        for i in range(n):
            v.np[0] = i & 0xFF
            v = self.echo.roundtrip(v)
            good += int(v.np[0]) == i & 0xFF and self.echo.peek(v) == i & 0xFF
        v.drop()
        return good

    def fill(self, n, byte):
        """Ask Echo for an n-byte vector: its sum, or the error the call raised."""
        try:
            f = self.echo.fill(n, byte)
        except RpcError as ex:
            return _err(ex)
        s = int(f.np.sum(dtype=np.uint64))
        f.drop()
        return f"sum {s}"

    def vec(self, n, byte):
        v = self.ctx.heap.alloc_vec(np.uint8, n)
        v.np[:] = byte
        return self._keep(v)

    def stamp(self):
        return self._keep(self.ctx.heap.alloc(Stamp, n=0))

    def own(self, slot):
        """(usable by the probe, sum of its bytes or -1, owner in the heap's record)."""
        h = self.vecs[slot]
        owner = int(self.ctx.heap.record(slot)[3])
        try:
            return True, int(np.frombuffer(h.buf, dtype=np.uint8).sum(dtype=np.uint64)), owner
        except OwnershipError:
            return False, -1, owner

    def owner(self, slot):
        return int(self.ctx.heap.record(slot)[3])

    def give(self, target, slot):
        """Move one of our vectors to `target` for good (Echo.keep)."""
        return self._target(target).keep(self.vecs.pop(slot))

    def kept_sum(self, target):
        return self._target(target).kept_sum()

    def pair_vecs(self, a, b):
        """A proper call with two of our vectors moved: its answer or its error."""
        try:
            return f"value {self.echo.pair_vecs(self.vecs.pop(a), self.vecs.pop(b))}"
        except RpcError as ex:
            return _err(ex)

    def forged_type_pair(self):
        """Through the proxy: a vector passed off (on the caller's side, past its own
        check) as an RRef[Stamp].  The callee refuses it; the call's other moved
        argument, already killed by the proxy for the call, must be alive again.
        (error, is it an OwnershipError, v alive, fake alive, sum of v, a proper pair)."""
        heap = self.ctx.heap
        v = heap.alloc_vec(np.uint8, 16)
        v.np[:] = 1
        other = heap.alloc_vec(np.uint64, 1)
        fake = type(heap.alloc(Stamp))._make(heap, other.slot, other.gen, other.type_id, other.offset,
                                            other.size, Stamp)
        try:
            self.echo.pair(v, fake)
            err, is_own = "no error", False
        except RpcError as ex:
            err, is_own = _err(ex), isinstance(ex, OwnershipError)
        alive = v.alive, fake.alive and other.alive
        total = int(v.np.sum(dtype=np.uint64)) if v.alive else -1
        proper = f"value {self.echo.pair(v, heap.alloc(Stamp, n=4))}"
        other.drop()
        return err, is_own, alive[0], alive[1], total, proper

    def raw(self, target, payload):
        """Send an encoded request, as no proxy would, over this placement's link."""
        link = self._target(target)._rl_link
        link.peer_for_call()
        kind, resp = link.invoke(payload, 5.0, None)
        return kind, bytes(resp)[:4000]

    # -- faults ------------------------------------------------------------------------------
    def crash_callee(self):
        try:
            self.echo.crash()
        except DomainCrashed as ex:
            return _err(ex)
        return "no error"

    def lend_and_hold(self, n, seconds):
        """Lend Echo a vector for `seconds` (Echo.hold): the probe may be killed meanwhile."""
        v = self.ctx.heap.alloc_vec(np.uint8, n)
        v.np[:] = 1
        return self.echo.hold(v, seconds)

    def drop_all(self):
        n = 0
        for h in self.vecs.values():
            if h.alive:
                h.drop()
                n += 1
        self.vecs.clear()
        return n

    # -- declared errors after moves (Keeping), deferred work (Deferring) --------------------
    def refuse(self, target, n, byte, keep):
        """Move a vector into Keeping.refuse, which raises its declared Refused (and
        keeps the vector if asked): the error, type and message."""
        v = self.ctx.heap.alloc_vec(np.uint8, n)
        v.np[:] = byte
        try:
            self.ctx.lookup(target, Keeping).refuse(v, keep)
        except Refused as ex:
            return _err(ex)
        return "no error"

    def kept(self, target):
        return self.ctx.lookup(target, Keeping).kept()

    def deferred(self, target):
        """(the callee's clock when it answered, when its deferred task ran), the
        second read by the next call."""
        d = self.ctx.lookup(target, Deferring)
        answered = d.stamp(False)
        return answered, d.last_deferred()

    def deferred_fails(self, target):
        """A call whose deferred task fails: (what the call gave, what the calls after
        it gave, until one failed)."""
        d = self.ctx.lookup(target, Deferring)
        try:
            d.stamp(True)
            first = "answered"
        except DomainCrashed as ex:
            return _err(ex), "not reached"
        for _ in range(500):
            try:
                d.last_deferred()
            except DomainCrashed as ex:
                return first, _err(ex)
            time.sleep(0.01)
        return first, "no error"
