"""Fuzz target `rref`: bad heap-handle wires in calls to an echo domain.

An attached client calls the builtin Echo domain, each input one call whose RRef
arguments (moved or borrowed, one or two of them) are drawn from:
- forged: a random slot and generation;
- stale: a slot of one of the caller's live objects with another generation;
- out of range: a slot past the ownership table, up to 2**32 - 1;
- foreign: the wire of an object the echo domain owns (one it kept);
- already moved: the wire of an object the caller gave away;
- dropped: the wire of an object the caller freed;
- of the wrong type: the caller's own record (Stamp) where a vector is expected;
- not a handle at all: negative, past 2**64, a string, an ext value;
- duplicated: the same handle twice in one call;
- and, beside a bad one, one of the caller's good vectors (the call is all or nothing:
  the good one must stay the caller's).
Sent two ways: raw on the call channel (as a misbehaving caller would, so the *callee*
must refuse: domains/marshal.py decode), and through the proxy with dead or duplicated
handles (so the *caller's* proxy must refuse before anything moves).  Some inputs are
good calls (roundtrip, keep, checksum) and must be accepted.

Checked after every input: each of the caller's live objects is still alive, its own,
and unchanged; every CHECK_EVERY inputs and at the end, the echo domain runs under
its first pid, and at the end `heap --check` is clean.

May call: supervisor.instance (run() starts its own instance), domains (attach, the
Echo builtin, channel kinds, marshal's wire form), shared_heap; msgpack, numpy.
"""

from __future__ import annotations

import random

import msgpack
import numpy as np

from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo, Stamp
from redleaf.domains.errors import BadArgument, CallOwnershipError, DomainCrashed, RpcError
from redleaf.domains.interface import spec_of
from redleaf.domains.marshal import rref_wire

from .harness import check_heap, drive, on_instance
from .tally import Tally

MANIFEST = """
[heap]
size = "16MiB"
records = 8192

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
"""
CHECK_EVERY = 50
POOL = 6            # live vectors the caller keeps
VEC = 64            # bytes per vector
MAX_KEPT = 40       # objects the echo domain may keep (foreign wires); then keep is not called
#: the methods taking handles, and how many
RREF_METHODS = {"roundtrip": 1, "keep": 1, "checksum": 1, "peek": 1, "pair_vecs": 2, "pair": 2}
_INDEX = {m.name: m.index for m in spec_of(Echo).by_index}
#: words a refusal of a bad handle carries (the error kind the callee names)
CLEAR_WORDS = (b"Ownership", b"BadArgument", b"CallRejected")


class RRefFuzzer:
    def __init__(self, client, tally: Tally, records: int):
        self.d = client
        self.t = tally
        self.records = records
        self.echo = client.lookup("echo", Echo)
        self.link = self.echo._rl_link
        self.pool: list = []            # (handle, fill byte)
        self.moved: list[int] = []      # wires of objects given away
        self.dropped: list[int] = []    # wires of objects freed
        self.kept = 0
        self.fill = 0
        self.stamp = client.heap.alloc(Stamp)
        self._refill()

    def _refill(self) -> None:
        while len(self.pool) < POOL:
            self.fill = (self.fill + 1) % 251
            v = self.d.heap.alloc_vec(np.uint8, VEC)
            v.np[:] = self.fill
            self.pool.append((v, self.fill))

    @staticmethod
    def _wire(h) -> int:
        slot, gen, _t = h.wire()
        return rref_wire(slot, gen)

    def bad_wire(self, rng: random.Random) -> tuple[str, object]:
        k = rng.randrange(9)
        if k == 0:
            return "forged", rref_wire(rng.randrange(1 << 32), rng.randrange(1 << 32))
        if k == 1:
            slot, gen, _t = rng.choice(self.pool)[0].wire()
            return "stale", rref_wire(slot, (gen + rng.randint(1, 1000)) % (1 << 32))
        if k == 2:
            return "out of range", rref_wire(rng.randrange(self.records, 1 << 32), rng.randrange(1 << 32))
        if k == 3 and self.moved:
            return "moved or foreign", rng.choice(self.moved)
        if k == 4 and self.dropped:
            return "dropped", rng.choice(self.dropped)
        if k == 5:
            return "wrong type", self._wire(self.stamp)
        if k == 6:
            return "not a handle", rng.choice([-1, -(1 << 63), (1 << 64) - 1, 1e19, "slot", 1.5, None, [],
                                              msgpack.ExtType(1, rng.randbytes(12)), b"\0" * 8])
        if k == 7:
            return "zero", rref_wire(0, rng.randrange(3))
        return "forged low slot", rref_wire(rng.randrange(1, min(self.records, 64)), rng.randrange(4))

    def one(self, rng: random.Random) -> None:
        k = rng.randrange(10)
        if k < 6:
            self.raw(rng)
        elif k < 8:
            self.proxy_bad(rng)
        else:
            self.good(rng)
        self.check_pool()

    def raw(self, rng: random.Random) -> None:
        """A hand-made payload with at least one bad handle: the callee must refuse it."""
        method = rng.choice(sorted(RREF_METHODS))
        n = RREF_METHODS[method]
        # a forged wire may by chance name one of our own live vectors: that is a good
        # handle, not a bad one, so draw again
        own = {self._wire(h) for h, _f in self.pool}
        what, bad = self.bad_wire(rng)
        while type(bad) is int and bad in own:
            what, bad = self.bad_wire(rng)
        args = [bad]
        if n == 2:
            dup = rng.random() < 0.3
            other = bad if dup else self._wire(rng.choice(self.pool)[0])
            what += " + duplicate" if dup else " + a good vector"
            args.append(other)
            rng.shuffle(args)
            if method == "pair" and bad == self._wire(self.stamp):
                args = [bad, other]  # pair(vec, stamp) would be a good call: keep it wrong
        elif rng.random() < 0.1:  # the same good handle twice where one is expected
            g = self._wire(rng.choice(self.pool)[0])
            what, args = "good twice", [g, g]
        # checksum and peek borrow: no handle was lent for a raw call, so even a good
        # one is refused there
        payload = msgpack.packb([_INDEX[method], args], use_bin_type=True)
        self.link.peer_for_call()
        kind, resp = self.link.invoke(payload, 10.0, None)
        resp = bytes(resp)
        label = f"raw {method}({what})"
        if kind == chan.REJECTED and any(w in resp for w in CLEAR_WORDS):
            self.t.refuse(f"{label}: {resp[:200].decode(errors='replace')}", "raw")
        elif kind == chan.CRASHED:
            self.t.crash(f"{label}: the echo domain crashed")
        else:
            self.t.confuse(f"{label}: payload {payload!r} answered kind {kind}: {resp[:200]!r}")

    def proxy_bad(self, rng: random.Random) -> None:
        """Dead, duplicated or mistyped handles through the proxy: refused at the caller."""
        e = self.echo
        k = rng.randrange(4)
        v = rng.choice(self.pool)[0]
        try:
            if k == 0:
                what = "pair_vecs(v, v)"
                e.pair_vecs(v, v)
            elif k == 1:
                what = "a dropped handle"
                dead = self.d.heap.alloc_vec(np.uint8, 8)
                self.dropped.append(self._wire(dead))
                dead.drop()
                e.roundtrip(dead)
            elif k == 2:
                what = "a moved handle"
                dead = self.d.heap.alloc_vec(np.uint8, 8)
                w = self._wire(dead)
                e.pair_vecs(dead, self.d.heap.alloc_vec(np.uint8, 8))
                self.moved.append(w)
                e.checksum(dead)
            else:
                what = "a Stamp as a vector"
                e.roundtrip(self.stamp)
        except (CallOwnershipError, BadArgument) as ex:
            self.t.refuse(f"proxy {what}: {type(ex).__name__}: {ex}", "proxy")
        except DomainCrashed as ex:
            self.t.crash(f"proxy {what}: {ex}")
        except Exception as ex:
            self.t.confuse(f"proxy {what}: {type(ex).__name__}: {ex}")
        else:
            self.t.confuse(f"proxy {what}: accepted")

    def good(self, rng: random.Random) -> None:
        e = self.echo
        i = rng.randrange(len(self.pool))
        v, fill = self.pool[i]
        k = rng.randrange(3)
        try:
            if k == 0:
                ok = e.checksum(v) == fill * VEC
                what = "checksum"
            elif k == 1:
                back = e.roundtrip(v)   # the same object comes back: its wire is ours again
                ok = bytes(back.buf) == bytes([fill]) * VEC
                self.pool[i] = (back, fill)
                what = "roundtrip"
            elif self.kept < MAX_KEPT:
                w = self._wire(v)
                ok = e.keep(v) == self.kept + 1
                self.kept += 1
                self.moved.append(w)
                del self.pool[i]
                self._refill()
                what = "keep"
            else:
                ok, what = e.inc(1) == 2, "inc"
        except DomainCrashed as ex:
            self.t.crash(f"good call: {ex}")
            return
        except Exception as ex:
            self.t.confuse(f"a good call refused: {type(ex).__name__}: {ex}")
            return
        if ok:
            self.t.accept("good")
        else:
            self.t.confuse(f"good {what}: wrong answer")

    def check_pool(self) -> None:
        for v, fill in self.pool:
            try:
                ok = v.alive and bytes(v.buf) == bytes([fill]) * VEC
            except Exception as ex:
                ok = False
                why = f"{type(ex).__name__}: {ex}"
            else:
                why = "changed or dead"
            if not ok:
                self.t.crash(f"a refused call cost the caller its object (slot {v.slot}): {why}", counted=False)
                self.pool = [(h, f) for h, f in self.pool if h.alive]
                self._refill()
                return


def fuzz(inst, count: int, seed: int, tally: Tally | None = None) -> Tally:
    tally = tally or Tally("rref", seed)
    rng = random.Random(seed)
    with inst.attach() as d:
        f = RRefFuzzer(d, tally, d.heap.n_records)
        drive(inst, tally, count, lambda: f.one(rng), "echo", CHECK_EVERY)
    check_heap(inst, tally)
    return tally


def run(count: int, seed: int) -> dict:
    """Start an echo instance, make `count` calls with bad (and some good) handles."""
    return on_instance("rref", MANIFEST, count, seed, fuzz)
