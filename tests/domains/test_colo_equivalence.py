"""The co-located transport (values) and the channel transport (bytes) give the same
facts for the same inputs: results, exceptions (type and message), ownership.

Both run in this process on a standalone exchange heap (conftest.World): a caller
domain and a callee domain, each with its own heap view, and one proxy per
transport.  The channel's side is `Dispatcher.serve` on the msgpack bytes the proxy
produced (what a channel carries between the two; the shared-memory ring adds no
meaning); the co-located side is a real LocalLink whose group is a stand-in for the
one a group host has (the bookkeeping LocalLink does on it is not what is compared
here; tests/domains/test_colocated.py runs real groups).  Every scenario runs on a
fresh heap per transport, so slots and generations, which messages name, match.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.domains import Borrow, interface, raises
from redleaf.domains import channel as chan
from redleaf.domains.errors import RpcError
from redleaf.domains.interface import MAX_INLINE, spec_of
from redleaf.domains.local_link import LocalEnd, LocalLink
from redleaf.domains.marshal import packb, rref_wire
from redleaf.domains.proxy import Dispatcher, make_proxy
from redleaf.shared_heap import OwnershipError, RRefVec
from tests.conftest import World

CALLER, CALLEE, THIRD = 1, 2, 3


class Refused(Exception):
    pass


@interface
class Eq:
    def values(self, a: int, b: float, c: bool, s: str, d: bytes, o: Optional[int],
               t: tuple[int, str], v: tuple[bytes, ...]) -> tuple[int, float, bool, str, bytes, Optional[int],
                                                               tuple[int, str], tuple[bytes, ...]]: ...
    def give_back(self, kind: str) -> bytes: ...
    def give_str(self, kind: str) -> str: ...
    def two(self, a: RRefVec, b: RRefVec) -> int: ...
    def look(self, a: Borrow[RRefVec], b: RRefVec) -> int: ...
    def roundtrip(self, a: RRefVec) -> RRefVec: ...
    @raises(Refused)
    def refuse(self, a: RRefVec, why: str) -> int: ...
    def keep_bytes(self, d: bytes) -> None: ...
    def kept(self) -> bytes: ...
    def null(self) -> None: ...
    def plain(self, s: str, t: tuple[int, str], o: Optional[str]) -> tuple[str, tuple[int, str], Optional[str]]: ...


class EqDomain(Eq):
    """Reports what it got (types and values): a transport that handed it other
    shapes than the other would show here."""

    def __init__(self, heap):
        self.heap = heap
        self.log: list = []
        self.held: list = []
        self.store = None
        self.out = bytearray(b"callee's")

    def values(self, a, b, c, s, d, o, t, v):
        self.log.append(tuple(type(x).__name__ for x in (a, b, c, s, d, o, t, v)))
        return a, b, c, s, d, o, t, v

    def give_back(self, kind):
        if kind == "bytearray":
            return self.out  # copied into the answer: mutating it later must not reach the caller
        if kind == "big":
            return bytes(MAX_INLINE + 1)
        if kind == "int":
            return 5
        return b"fine"

    def give_str(self, kind):
        return {"surrogate": "a\udc80b", "long": "x" * (MAX_INLINE + 1), "none": None}.get(kind, "fine\u00e9")

    def two(self, a, b):
        self.held += [a, b]
        return int(a.np.sum()) + int(b.np.sum())

    def look(self, a, b):
        self.held.append(b)
        return int(a.np.sum())

    def roundtrip(self, a):
        a.np[:] += 1
        return a

    def refuse(self, a, why):
        raise Refused(why, 7, [1, 2])  # a non-primitive argument travels as its repr

    def keep_bytes(self, d):
        self.store = d

    def kept(self):
        return self.store

    def null(self):
        return None

    def plain(self, s, t, o):
        self.log.append((type(s).__name__, type(t).__name__, type(o).__name__))
        return s, t, o


class _StandInGroup:
    """What LocalLink touches of its group host (domains/group.py Group)."""

    def __init__(self):
        self.current = 0
        self.doomed: set = set()
        self.group = self

    def member_alive(self, did: int) -> bool:
        return True


class _ByteLink:
    """The channel transport without the ring: the proxy's bytes go to the callee's
    Dispatcher.serve, whose bytes come back."""

    local = False

    def __init__(self, rt, callee_rt, disp):
        self.rt, self.callee_rt, self.disp = rt, callee_rt, disp
        self.name, self.peer, self.deadline = "eq", CALLEE, None
        self.end = SimpleNamespace(caller=CALLER, state=chan.OPEN, chan_id=1)

    def peer_for_call(self) -> int:
        return CALLEE

    def invoke(self, payload, timeout, ctx):
        return self.disp.serve(self.callee_rt, self.end, bytes(payload))


def _local_link(rt, callee_rt, disp) -> LocalLink:
    g = _StandInGroup()
    callee_rt.area = bytearray(64)
    callee_rt.deferred, callee_rt.serving, callee_rt.calls_served = [], None, 0
    link = LocalLink.__new__(LocalLink)
    link.rt, link.name, link.iface, link.group = rt, "eq", Eq, g
    link.peer, link.disp, link.serve, link.end = CALLEE, disp, disp.serve_values, LocalEnd(CALLER, g)
    link.target = SimpleNamespace(alive=True, rt=callee_rt, id=CALLEE, depth=0)
    link.reentrant, link.deadline = True, None
    return link


class Side:
    """One transport on a fresh heap: the caller's heap view, the callee's, a third
    domain's, the callee object and the proxy."""

    def __init__(self, transport: str):
        self.world = World(size=2 << 20, records=2048)
        self.heap = self.world.domain(CALLER)
        self.cheap = self.world.domain(CALLEE)
        self.third = self.world.domain(THIRD)
        rt = SimpleNamespace(heap=self.heap, domain_id=CALLER, calls_made=0)
        self.crt = SimpleNamespace(heap=self.cheap, domain_id=CALLEE)
        self.obj = EqDomain(self.cheap)
        self.disp = Dispatcher("eq", spec_of(Eq), self.obj)
        mk = _local_link if transport == "colocated" else _ByteLink
        self.link = mk(rt, self.crt, self.disp)
        self.p = make_proxy(Eq, self.link)

    def vec(self, byte: int, heap=None):
        v = (heap or self.heap).alloc_vec(np.uint8, 8)
        v.np[:] = byte
        return v

    def owner(self, h) -> tuple:
        """(state, owner, borrower) of a handle's record, as the heap holds it."""
        st_, _f, _k, owner, gen, _t, _o, _s, borrower, _p = self.heap.record(h.slot)
        return (st_, owner, borrower) if gen == h.gen else ("gone",)

    def close(self):
        self.world.close()


def _outcome(fn):
    try:
        r = fn()
    except (RpcError, Exception) as e:  # noqa: BLE001 - the exception is the fact compared
        return ("raised", type(e).__name__, str(e))
    return ("returned", _norm(r))


def _norm(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, tuple):
        return ("tuple",) + tuple(_norm(x) for x in v)
    if isinstance(v, RRefVec):
        return ("RRefVec", v.slot, v.gen, bytes(v.np).hex())
    return (type(v).__name__, v)


def both(scenario):
    """Run `scenario(side)` on each transport; its facts (a list) must be equal."""
    facts = {}
    for transport in ("process", "colocated"):
        s = Side(transport)
        try:
            facts[transport] = scenario(s)
        finally:
            s.close()
    assert facts["process"] == facts["colocated"]
    return facts["colocated"]


# -- plain values, good and bad ------------------------------------------------------

_any_str = st.one_of(st.text(st.characters(blacklist_categories=()), max_size=6),  # surrogates included
                     st.sampled_from(["\udc80", "ok\ud800", "\u00e9t\u00e9"]))  # ... and surely drawn
_value = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70), st.floats(allow_nan=False), st.booleans(), st.none(),
    _any_str, st.binary(max_size=6), st.binary(max_size=6).map(bytearray),
    st.tuples(st.integers(), _any_str), st.lists(st.integers(), max_size=2),
    st.tuples(st.binary(max_size=3), st.binary(max_size=3)),
    st.just("y" * (MAX_INLINE + 1)), st.just(bytes(MAX_INLINE + 1)), st.just((b"",) * (MAX_INLINE // 8 + 1)),
)
_good = st.tuples(st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1), st.floats(allow_nan=False),
                  st.booleans(), _any_str, st.binary(max_size=8), st.none() | st.integers(0, 9),
                  st.tuples(st.integers(0, 9), _any_str), st.lists(st.binary(max_size=3), max_size=3).map(tuple))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=_good, bad_at=st.none() | st.integers(0, 7), bad=_value)
def test_plain_values_and_their_errors_are_the_same(args, bad_at, bad):
    args = list(args)
    if bad_at is not None:
        args[bad_at] = bad

    def scenario(s):
        return [_outcome(lambda: s.p.values(*args)), _outcome(lambda: s.p.plain(args[3], args[6], args[3])),
                _outcome(lambda: s.p.plain(args[3], args[6], args[5])), s.obj.log]

    both(scenario)


def test_a_wrong_number_of_arguments_and_a_surrogate_str_fail_alike():
    facts = both(lambda s: [_outcome(lambda: s.p.values(1)),
                            _outcome(lambda: s.p.values(1, 1.0, True, "\ud800", b"", None, (1, "\udfff"), ())),
                            _outcome(lambda: s.p.plain("fine", (1, "\udfff"), None))])
    assert facts[0][1] == "BadArgument" and facts[1][1] == "BadArgument" and "surrogates" in facts[1][2]
    assert facts[2][1] == "BadArgument" and "cannot be encoded" in facts[2][2]


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "big", "int"])
def test_return_values_are_checked_alike(kind):
    facts = both(lambda s: [_outcome(lambda: s.p.give_back(kind))])
    if kind in ("big", "int"):
        assert facts[0][:2] == ("raised", "BadArgument")


@pytest.mark.parametrize("kind", ["fine", "surrogate", "long", "none"])
def test_str_return_values_including_unencodable_ones_fail_alike(kind):
    facts = both(lambda s: [_outcome(lambda: s.p.give_str(kind))])
    assert (facts[0][0] == "returned") == (kind == "fine")


def test_no_aliasing_of_mutable_values_either_way():
    def scenario(s):
        mine = bytearray(b"abc")
        s.p.keep_bytes(mine)
        mine[0] = ord("X")  # the callee kept a copy, not the caller's bytearray
        kept = s.p.kept()
        got = s.p.give_back("bytearray")
        s.obj.out[0] = ord("X")  # the caller got a copy, not the callee's bytearray
        return [kept, type(s.obj.store).__name__, got, type(got).__name__]

    assert both(scenario) == [b"abc", "bytes", b"callee's", "bytes"]


# -- ownership -------------------------------------------------------------------------

def _rref_facts(s, handles, fn):
    out = _outcome(fn)
    return [out, [h.alive for h in handles], [s.owner(h) for h in handles],
            [(h.slot, h.alive) for h in s.obj.held]]


CASES = ["distinct", "duplicate", "dead", "moved", "third", "lent-and-moved", "borrowed-twice", "roundtrip",
         "declared", "callee-forgery", "stale-gen", "out-of-range"]


@pytest.mark.parametrize("case", CASES)
def test_ownership_outcomes_are_the_same(case):
    def scenario(s):
        a, b = s.vec(1), s.vec(2)
        if case == "distinct":
            return _rref_facts(s, [a, b], lambda: s.p.two(a, b))
        if case == "duplicate":
            return _rref_facts(s, [a, b], lambda: s.p.two(a, a))
        if case == "dead":
            b.drop()
            return _rref_facts(s, [a, b], lambda: s.p.two(a, b))
        if case == "moved":
            s.p.two(s.vec(3), b)  # b moved to the callee: the caller's handle is dead
            return _rref_facts(s, [a, b], lambda: s.p.two(a, b))
        if case == "third":
            c = s.vec(4, heap=s.third)  # another domain's object (a handle only that domain should hold)
            return _rref_facts(s, [a, c], lambda: s.p.two(a, c))
        if case == "lent-and-moved":
            return _rref_facts(s, [a], lambda: s.p.look(a, a))
        if case == "borrowed-twice":
            return _rref_facts(s, [a, b], lambda: [s.p.look(a, b), s.p.look(a, s.vec(5))])
        if case == "roundtrip":
            box = [a]

            def rt():
                box[0] = s.p.roundtrip(box[0])
                return box[0]
            return _rref_facts(s, [a], rt) + [s.owner(box[0])]
        if case == "declared":  # the callee refuses with a declared error: what it was moved is freed
            return _rref_facts(s, [a], lambda: s.p.refuse(a, "no"))
        # forged requests (no proxy would send them): the callee's own object, a stale
        # generation, a slot out of range
        mine = s.vec(6, heap=s.cheap)
        w = {"callee-forgery": rref_wire(mine.slot, mine.gen), "stale-gen": rref_wire(b.slot, b.gen + 1),
             "out-of-range": rref_wire(100000, 0)}[case]
        idx = spec_of(Eq).methods["two"].index
        wargs = [rref_wire(a.slot, a.gen), w]
        if isinstance(s.link, LocalLink):
            kind, resp = s.link.invoke_values(idx, tuple(wargs), None)
        else:
            kind, resp = s.disp.serve(s.crt, s.link.end, packb((idx, wargs)))
        return [kind, bytes(resp), [s.owner(a), s.owner(b), s.owner(mine)], s.obj.held]

    both(scenario)


def test_raw_byte_requests_to_a_local_link_are_decoded_as_a_channel_callee_would():
    """LocalLink.invoke (bytes, for fuzzers) answers as Dispatcher.serve does."""
    def scenario(s):
        idx = spec_of(Eq).methods["values"].index
        out = []
        for req in (b"\xc1", packb((99, [])), packb((idx, [1])), packb(("x", []))):
            kind, resp = (s.link.invoke(req, 1.0, None) if isinstance(s.link, LocalLink)
                          else s.disp.serve(s.crt, s.link.end, req))
            out.append((kind, bytes(resp)))
        return out

    assert all(k == chan.REJECTED for k, _r in both(scenario))


def test_use_after_move_raises_ownership_error_on_both():
    def scenario(s):
        a = s.vec(1)
        s.p.two(a, s.vec(2))
        try:
            a.np[0] = 1
        except OwnershipError as e:
            return [type(e).__name__, str(e)]
        return ["no error"]

    assert both(scenario)[0] == "OwnershipError"
