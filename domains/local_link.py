"""The co-located transport: a call between two domains of one group (DESIGN §7a).

A LocalLink is what a proxy holds instead of a channel Link when the callee shares
the caller's group host.  The proxy does not change: it checks and encodes the
arguments exactly as for a channel (domains/marshal.py stages moves and lends), but
hands `invoke_values` the encoded arguments in their wire shape instead of msgpack
bytes.  The callee's own Dispatcher (serve_values, the same code a channel's
request reaches after unpackb) re-validates them with the callee's runtime and heap
view, takes the moved handles for the callee's domain id all-or-nothing (Heap.take,
the same code as for a channel), runs the method with the callee as the acting
domain, and encodes the answer to its wire shape, which the proxy decodes with the
same decoder as a channel's.  So validation, ownership moves, borrows and declared
exceptions have one implementation, and only the hop differs: no msgpack, no
channel, no process switch, no doorbell.

Why passing the wire shape cannot alias: the encoders copy what is mutable (bytes
from a bytearray or memoryview, records by value, tuples into lists) and the
decoders build fresh tuples and records, so neither side ends up holding a mutable
object the other holds.  What stays shared are ints, floats, bools, None, strs and
bytes, which are immutable (the checks admit their exact types only).  What packb
would refuse (a str UTF-8 cannot encode) is refused by marshal.compile_wire with
packb's own error, on both sides.

A panic of the callee (an undeclared exception, DomainPanic from proxy.panic)
unwinds to here: the group ends that domain alone (its host reports it; the
supervisor reclaims its heap objects by owner id) and the caller sees DomainCrashed.
A call cannot time out: a co-located callee that hangs hangs its caller's thread, as
in RedLeaf, and the watchdog ends the group.

May call: domains.channel (answer kinds), domains.doorbell, domains.errors,
domains.interface, domains.marshal (packb/unpackb for raw byte requests),
domains.proxy (DomainPanic), the group it belongs to.
"""

from __future__ import annotations

from . import channel as chan
from .doorbell import RA_BUSY
from .errors import DomainCrashed, DomainUnavailable
from .interface import spec_of
from .marshal import packb, unpackb
from .proxy import DomainPanic


class LocalEnd:
    """The callee's view of a co-located caller, in place of a channel: who calls
    (`caller`, whose handles it takes), and whether that caller is still there
    (`state`, read by the callee before it takes moved arguments, as for a channel)."""

    __slots__ = ("caller", "chan_id", "group")

    def __init__(self, caller: int, group):
        self.caller = caller
        self.chan_id = -caller  # negative: no channel; Runtime.client_alive knows it
        self.group = group

    @property
    def state(self) -> int:
        return chan.OPEN if self.group.member_alive(self.caller) else chan.CRASHED


class LocalLink:
    """The caller's end of a call to `name` exported by a domain of its group."""

    __slots__ = ("rt", "name", "iface", "group", "peer", "target", "disp", "serve", "end", "reentrant", "deadline")
    local = True  # proxies hand this link the wire shape itself (invoke_values), not bytes

    def __init__(self, rt, name: str, iface: type):
        self.rt = rt
        self.name = name
        self.iface = iface
        self.group = rt.group
        self.peer = 0
        self.target = None
        self.disp = None
        self.serve = None  # the callee dispatcher's serve_values, bound once per incarnation
        self.end = LocalEnd(rt.domain_id, rt.group)
        self.reentrant = True
        self.deadline = None  # a co-located call runs on the caller's own thread: no deadline applies

    def connect(self) -> None:
        spec = spec_of(self.iface)
        found = self.group.resolve(self.name, spec.name)
        if found is None:
            raise DomainUnavailable(f"{self.name} ({spec.name}) is not running in group {self.group.name}")
        member, export = found
        if export.spec.fingerprint != spec.fingerprint:
            raise DomainUnavailable(f"{self.name} exports another version of {spec.name} than the caller's")
        self.target, self.disp, self.peer = member, export.dispatcher, member.id
        self.serve = export.dispatcher.serve_values

    def peer_for_call(self) -> int:
        t = self.target
        if t is None or not t.alive:
            self.connect()
        return self.peer

    def invoke(self, payload: bytes, timeout: float, ctx) -> tuple[int, bytes]:
        """A request in bytes, as a channel carries it (for code that builds raw
        requests: fuzzers, tests of malformed calls): decoded as a channel's callee
        decodes it, then served as any co-located call; the answer in bytes."""
        try:
            idx, wargs = unpackb(payload)
        except Exception:
            return chan.REJECTED, packb(("CallRejected", f"malformed request to {self.name}"))
        kind, resp = self.invoke_values(idx, wargs, ctx)
        if kind == chan.OK:  # encodable: the callee's answer passed compile_wire before it moved anything
            resp = packb(resp)
        return kind, resp

    def invoke_values(self, idx, wargs, ctx) -> tuple[int, object]:
        """Run method `idx` of the callee on arguments in their wire shape, on this
        thread, with the callee as the acting domain (Dispatcher.serve_values checks
        and takes them as a channel's callee would)."""
        t = self.target
        if t is None or not t.alive:
            if ctx is not None:  # arguments were encoded for an incarnation that is gone
                raise DomainCrashed(f"{self.name} died before the call was made")
            self.connect()
            t = self.target
        g = self.group
        prev = g.current
        crt = t.rt
        area = crt.area
        end = self.end
        self.rt.calls_made += 1
        g.current = t.id
        t.depth += 1
        busy, outer = area[RA_BUSY], crt.serving
        area[RA_BUSY] = 1
        crt.serving = end
        try:
            kind, resp = self.serve(crt, end, idx, wargs)
            if crt.deferred:  # the callee's bottom half, before its caller goes on
                crt._run_deferred()
        except DomainPanic as p:
            if p.domain != t.id:
                raise  # (not ours to catch: an enclosing boundary's)
            g.current = prev
            t.depth -= 1
            g.end_member(t, 70, p.reason)
            self._caller_check()
            return chan.CRASHED, b""
        finally:
            area[RA_BUSY] = busy
            crt.serving = outer
        g.current = prev
        t.depth -= 1
        crt.calls_served += 1
        if g.doomed:
            self._caller_check()
        return kind, resp

    def _caller_check(self) -> None:
        """A fault injected into the caller while it waited here fires now, as the
        call returns into it (it had frames on the thread, so it could not end then)."""
        self.group.fire_doomed(self.rt.domain_id)
