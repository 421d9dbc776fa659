"""Proxies (caller side) and dispatchers (callee side), generated from an InterfaceSpec.

The proxy class for interface `I` subclasses `I`, so `isinstance(proxy, I)` holds and a
proxy can be passed wherever the interface is expected (capability passing).  Each
method is a closure over its precompiled checks and encoders; the common case of
plain-value arguments goes straight to msgpack, or, for a co-located callee (a
LocalLink, `link.local`), straight to its Dispatcher.serve_values as values: the
same encoders and decoders run on both transports, only packb/unpackb are skipped
(see _make_method).

What a call can raise (domains/errors.py has the tree): the method's declared
exceptions, and otherwise an `RpcError`: DomainCrashed, DomainUnavailable, RpcTimeout,
BadArgument (an argument, or the callee's return value, does not fit the interface),
CallRejected, CallOwnershipError (a handle refused; every moved argument stays with
the caller) and CallHeapExhausted (the callee ran out of heap; it keeps running).
A callee survives everything a caller can send it: only an undeclared exception of
its own method (a panic) ends it.

May call: domains.channel, domains.errors, domains.interface, domains.marshal,
shared_heap errors.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from functools import partial
from typing import Any

from redleaf.shared_heap.errors import HeapExhausted, OwnershipError

from . import channel as chan
from .doorbell import fence
from .errors import BadArgument, CallHeapExhausted, CallOwnershipError, CallRejected, DomainCrashed, RpcError
from .interface import InterfaceSpec, spec_of
from .marshal import CallCtx, compile_check, compile_decode, compile_encode, compile_wire, packb, unpackb

_PROXY_CLASSES: dict[type, type] = {}
_OK = chan.OK
_NIL = b"\xc0"  # msgpack None


def _rejected(payload) -> RpcError:
    try:
        kind, message = unpackb(payload)
    except Exception:
        return CallRejected("the callee sent a malformed rejection")
    if not (isinstance(kind, str) and isinstance(message, str)):
        return CallRejected("the callee sent a malformed rejection")
    if kind == "OwnershipError":
        return CallOwnershipError(message)
    if kind == "HeapExhausted":
        return CallHeapExhausted(message)
    if kind == "BadArgument":
        return BadArgument(message)
    return CallRejected(f"{kind}: {message}")


def _pack_or_bad(obj, where: str) -> bytes:
    """packb, with a failure (a value the checks let through but msgpack refuses)
    turned into the caller's BadArgument."""
    try:
        return packb(obj)
    except (TypeError, ValueError, OverflowError) as e:
        raise BadArgument(f"{where}: cannot be encoded: {e}") from None


def _make_method(spec: InterfaceSpec, m):
    """One proxy method.  Both transports run the same steps: check the arguments,
    encode them to their wire shape (staging moves, lending borrows), hand them to
    the callee's Dispatcher, and decode its answer with the same decoders.  A
    channel Link carries the wire shape as msgpack bytes; a LocalLink
    (`link.local`, a co-located callee) hands the wire shape itself to the callee's
    Dispatcher.serve_values, skipping packb and unpackb only.  What packb would
    have refused (a str UTF-8 cannot encode) is refused here by `compile_wire`, with
    packb's own error, so a call fails the same way on both."""
    where = f"{spec.cls.__qualname__}.{m.name}"
    checks = tuple(compile_check(d, f"{where}, argument {n!r}") for n, d in m.params)
    encs = tuple(compile_encode(d, f"{where}, argument {n!r}") for n, d in m.params)
    wires = tuple((i, w) for i, w in enumerate(compile_wire(d) for _n, d in m.params) if w is not None)
    nargs = len(checks)
    simple = all(e is None for e in encs)
    dec_ret = compile_decode(m.returns, f"{where}, return value")
    ret_plain = m.returns.kind in ("scalar", "str", "bytes", "none")
    ret_none = m.returns.kind == "none"
    idx = m.index
    raises = m.raises
    declared = m.timeout_s or spec.timeout_s
    no_args = packb((idx, ())) if nargs == 0 else None  # the same bytes every time

    def wire_or_bad(wargs):
        try:
            for i, w in wires:
                w(wargs[i])
        except (TypeError, ValueError, OverflowError) as e:  # as _pack_or_bad words packb's refusal
            raise BadArgument(f"{where}: cannot be encoded: {e}") from None

    def call(self, *args):
        if len(args) != nargs:
            raise BadArgument(f"{where}() takes {nargs} argument(s), got {len(args)}")
        if nargs:
            for c, a in zip(checks, args):
                c(a)
        link = self._rl_link
        local = link.local
        ctx = None
        if simple and local:  # plain values to a co-located callee: the shortest path
            if wires:
                wire_or_bad(args)
            kind, resp = link.invoke_values(idx, args, None)  # a tuple of immutable values: nothing to copy
            if kind == _OK and ret_plain:
                return None if ret_none and resp is None else dec_ret(resp, None)
        else:
            if simple:
                payload = no_args or _pack_or_bad((idx, args), where)
            else:
                peer = link.peer_for_call()
                ctx = CallCtx(link.rt, peer)
                try:
                    wargs = [a if e is None else e(a, ctx) for e, a in zip(encs, args)]
                    if local:
                        if wires:
                            wire_or_bad(wargs)
                    else:
                        payload = _pack_or_bad((idx, wargs), where)
                except BaseException:
                    ctx.end_lends()  # nothing was moved: staged handles are still alive
                    raise
                for h in ctx.moved:  # the callee takes them; until it answers they are not ours to use
                    h.invalidate()
            try:
                if local:
                    kind, resp = link.invoke_values(idx, wargs, ctx)
                else:
                    dl = getattr(link, "deadline", None)  # a caller's own deadline only ever shortens the interface's
                    kind, resp = link.invoke(payload, declared if dl is None or dl > declared else dl, ctx)
            except DomainCrashed:  # not sent: nothing was taken
                if ctx is not None:
                    ctx.revive_moved()
                raise
            finally:
                if ctx is not None and ctx.lent:
                    ctx.end_lends()
        if kind == _OK:
            if local:  # the callee's encoded answer itself, checked by the same decoder
                if ret_none and resp is None:
                    return None
                value = resp
                if ret_plain:
                    return dec_ret(value, None)
            else:
                if ret_none and resp == _NIL:
                    return None  # the common `-> None`: nothing to decode
                try:  # a callee that writes garbage as its reply fails this call, not its caller
                    value = unpackb(resp)
                    if ret_plain:
                        return dec_ret(value, None)
                except RpcError:
                    raise  # already the caller's clear error (e.g. BadArgument: a value of the wrong type)
                except Exception as e:
                    raise CallRejected(f"{where}: the callee sent a malformed reply ({type(e).__name__})") from None
            rctx = CallCtx(link.rt, link.peer)
            try:
                return dec_ret(value, rctx)
            except OwnershipError as e:
                raise CallOwnershipError(f"{where}, return value: {e}") from None
        if kind == chan.DECLARED:
            try:
                i, eargs = unpackb(resp)
                exc = raises[i](*eargs)
            except Exception:
                raise CallRejected(f"{where}: the callee sent a malformed exception") from None
            raise exc
        if ctx is not None and ctx.moved:
            ctx.revive_moved()  # refused, or the callee died: what it did not take is ours again
        if kind == chan.REJECTED:
            raise _rejected(resp)
        if kind != chan.CRASHED:
            raise CallRejected(f"{where}: the callee sent a reply of unknown kind {kind}")
        raise DomainCrashed(f"{link.name} crashed during {where}()")

    call.__name__ = m.name
    call.__qualname__ = f"Proxy[{spec.cls.__qualname__}].{m.name}"
    return call


def proxy_class(iface: type) -> type:
    cls = _PROXY_CLASSES.get(iface)
    if cls is not None:
        return cls
    spec = spec_of(iface)
    ns: dict[str, Any] = {"__slots__": ("_rl_link",), "_rl_spec": spec}
    for m in spec.by_index:
        ns[m.name] = _make_method(spec, m)
    ns["__repr__"] = lambda self: f"<proxy {spec.cls.__qualname__} -> {self._rl_link.name}>"
    cls = type(f"Proxy[{iface.__qualname__}]", (iface,), ns)
    _PROXY_CLASSES[iface] = cls
    return cls


def make_proxy(iface: type, link) -> Any:
    obj = object.__new__(proxy_class(iface))
    obj._rl_link = link
    return obj


def is_capability(v, iface: type) -> bool:
    return isinstance(v, iface)


def capability_wire(v, rt) -> list:
    """A capability travels as the export name it can be looked up by."""
    link = getattr(v, "_rl_link", None)
    if link is not None:
        return [link.name, spec_of(v).name]
    return [rt.export_object(v), spec_of(v).name]


def capability_from_wire(w, iface: type, rt):
    if not (isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(x, str) for x in w)):
        raise BadArgument("malformed interface reference")
    name, iname = w
    if iname != spec_of(iface).name:
        raise BadArgument(f"capability {name!r} implements {iname}, expected {spec_of(iface).name}")
    return rt.lookup(name, iface)


# ---------------------------------------------------------------------------------
# Callee side


def _free_left(adopted: list) -> None:
    """A call that failed with a declared error gives up what it was moved, as a Rust
    callee returning Err drops its arguments: objects it neither passed on, freed nor
    kept are freed here.  Without this each refused call leaked its arguments into the
    callee until the callee died (a client sending bad batches could fill the heap).

    "Kept" is the callee storing the handle (in `self`, a list...): then something else
    still refers to it, and it is left alone.  By now the only references are this
    list, the loop variable and getrefcount's argument."""
    for h in adopted:
        if h.alive and not h.borrowed and sys.getrefcount(h) <= 3:
            try:
                h.drop()
            except Exception:  # noqa: BLE001 - e.g. lent out meanwhile: not ours to free now
                pass


class InjectedCallFault(BaseException):
    """Raised inside a call by an armed `inject --action exception` (see FaultArm).

    A BaseException, like host.InjectedFault, so that no `except Exception` in the
    domain's code on the way can swallow it: it escapes the method and panics."""


INJECT_ACTIONS = ("exception", "exit", "hang", "slow")


class FaultArm:
    """An in-call fault waiting for its moment: the `nth` call of `method` (counted
    from arming, across every export of the domain that has the method) does
    `action` inside the call, after its arguments were taken, as if the method's
    own code did it.  One-shot: it disarms itself as it fires.

    Pure bookkeeping (`hit`); `fire` is the one impure step."""

    __slots__ = ("method", "nth", "action", "stall_s", "count", "dispatchers")

    def __init__(self, method: str, nth: int, action: str, stall_s: float = 0.0):
        if action not in INJECT_ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; one of {', '.join(INJECT_ACTIONS)}")
        if nth < 1:
            raise ValueError(f"nth must be >= 1 (the first call is 1), got {nth}")
        self.method, self.nth, self.action, self.stall_s = method, nth, action, float(stall_s)
        self.count = 0
        self.dispatchers: list = []

    def arm(self, dispatchers) -> int:
        """Arm every dispatcher whose interface has the method; how many were armed."""
        for d in dispatchers:
            idx = d.method_index(self.method)
            if idx is not None:
                d.armed, d.armed_idx = self, idx
                self.dispatchers.append(d)
        return len(self.dispatchers)

    def disarm(self) -> None:
        for d in self.dispatchers:
            if d.armed is self:
                d.armed = None
        self.dispatchers = []

    def hit(self) -> bool:
        """Count one call of the armed method; True (and disarmed) on the nth."""
        self.count += 1
        if self.count < self.nth:
            return False
        self.disarm()
        return True

    def fire(self, where: str) -> None:
        sys.stderr.write(f"redleaf: injected fault: {self.action} in call {self.nth} of {where}\n")
        sys.stderr.flush()
        if self.action == "exception":
            raise InjectedCallFault(f"fault injected into call {self.nth} of {where}")
        if self.action == "exit":
            os._exit(0)
        if self.action == "hang":
            while True:  # no heartbeat, no answer: the caller's deadline or the watchdog ends it
                pass
        time.sleep(self.stall_s)  # "slow": stall, then go on as if nothing happened


class Dispatcher:
    """Serves calls for one exported object: decode, re-check, call, encode.

    Nothing a caller sends can end the callee: a malformed request, a bad method
    index or argument, a refused handle, or a return value the interface cannot
    carry is an error answered to the caller.  Only an undeclared exception of the
    method itself is a panic.

    `armed` is a FaultArm or None: the only cost of fault injection on the call path
    is that one attribute test while nothing is armed."""

    armed = None
    armed_idx = -1

    def __init__(self, name: str, iface_spec: InterfaceSpec, obj):
        self.name = name
        self.spec = iface_spec
        self.table = []
        for m in iface_spec.by_index:
            where = f"{iface_spec.cls.__qualname__}.{m.name}"
            decs = tuple(compile_decode(d, f"{where}, argument {n!r}") for n, d in m.params)
            plain_args = all(d.kind in ("scalar", "str", "bytes", "none") for _n, d in m.params)
            ret_check = compile_check(m.returns, f"{where}() return value")
            ret_enc = compile_encode(m.returns, f"{where}() return value")
            ret_wire = compile_wire(m.returns)
            self.table.append((getattr(obj, m.name), decs, len(decs), plain_args, ret_check, ret_enc, ret_wire,
                               ret_enc is None and ret_wire is None, m.returns.kind == "none", m.raises, m))
        self.n_methods = len(self.table)

    def method_index(self, name: str) -> int | None:
        for m in self.spec.by_index:
            if m.name == name:
                return m.index
        return None

    def serve(self, rt, ch, req) -> tuple[int, bytes]:
        """A request as bytes (a channel's): decode it, serve it, answer in bytes."""
        try:
            idx, wargs = unpackb(req)
        except Exception:
            return chan.REJECTED, packb(("CallRejected", f"malformed request to {self.name}"))
        return self.serve_values(rt, ch, idx, wargs, True)

    def serve_values(self, rt, ch, idx, wargs, packed: bool = False) -> tuple[int, Any]:
        """Serve method `idx` on arguments in their wire shape (what unpackb gives a
        channel's callee; what a co-located proxy hands over directly), re-validating
        every one as if it came from anywhere.  The answer's kind, and as payload:
        for OK the encoded return value, as bytes if `packed` else in its wire shape
        (with what packb would refuse refused the same way); otherwise bytes."""
        if type(idx) is not int or not 0 <= idx < self.n_methods:  # not bool, not negative
            return chan.REJECTED, packb(("CallRejected", f"{self.name} has no method number {idx!r} (its interface "
                                         f"{self.spec.name} has {self.n_methods}); the caller's copy of the "
                                         "interface does not match"))
        fn, decs, n, plain, ret_check, ret_enc, ret_wire, ret_as_is, ret_none, raises, m = self.table[idx]
        if not isinstance(wargs, (tuple, list)) or len(wargs) != n:
            return chan.REJECTED, packb(("BadArgument", f"{m.name}() takes {len(decs)} argument(s)"))
        ctx = None
        args = ()  # no arguments: no comprehension (one is a call of its own, as dear as a null call's dispatch)
        if n:
            if not plain:  # plain values need no bookkeeping
                ctx = CallCtx(rt, ch.caller, taking=True)
            try:
                if n == 1:  # the common one-argument call, without a comprehension's call
                    args = (decs[0](wargs[0], ctx),)
                else:
                    args = [d(w, ctx) for d, w in zip(decs, wargs)]
                if ctx is not None and ctx.incoming:
                    rt.heap.take(ctx.incoming, ch.caller, partial(_caller_there, ch))  # (a C-level callable: no frame)
                    ctx.adopted = ctx.incoming
            except Exception as e:
                if ctx is not None:  # nothing was taken: every argument is still the caller's
                    for h in ctx.incoming:
                        h.invalidate()
                    for h in ctx.borrowed_in:
                        h.invalidate()
                return chan.REJECTED, packb((_kind_of(e), f"{self.name}.{m.name}(): {e}"))
        declared = exhausted = None
        try:
            arm = self.armed
            if arm is not None and idx == self.armed_idx and arm.hit():
                arm.fire(f"{self.name}.{m.name}()")
            result = fn(*args) if n else fn()  # (no argument tuple to unpack: the null call's case)
        except raises as e:
            declared = packb((raises.index(type(e)) if type(e) in raises else _declared_index(raises, e),
                              _exc_args(e)))
        except HeapExhausted as e:  # every method may run out of heap: the caller's error, not a panic
            exhausted = f"{self.name}.{m.name}() ran out of exchange heap: {e}"
        except BaseException:
            panic(f"undeclared exception escaped {self.name}.{m.name}()")
        finally:
            if ctx is not None:
                for h in ctx.borrowed_in:
                    h.invalidate()
        if declared is not None or exhausted is not None:
            if ctx is not None and ctx.adopted:
                args = None  # (and the exception with its frames is gone): see _free_left
                _free_left(ctx.adopted)
            if exhausted is not None:
                return chan.REJECTED, packb(("HeapExhausted", exhausted))
            return chan.DECLARED, declared
        if ret_as_is and not packed:  # plain values, as they are: no frame more
            if result is not None or not ret_none:  # (None checked here: a `-> None` method returning it)
                try:
                    ret_check(result)
                except Exception as e:
                    return self._cannot_carry(m, e)
            return _OK, result
        return self._answer(rt, ch, m, result, ret_check, ret_enc, ret_wire, packed)

    def _cannot_carry(self, m, e) -> tuple[int, bytes]:
        return chan.REJECTED, packb(("BadArgument", f"{self.name}.{m.name}() returned a value its interface "
                                     f"cannot carry ({e}); the result was dropped"))

    def _answer(self, rt, ch, m, result, ret_check, ret_enc, ret_wire, packed) -> tuple[int, Any]:
        """Encode the return value; one the interface cannot carry is the caller's error
        (BadArgument naming the method) and moves nothing."""
        rctx = None
        try:
            ret_check(result)
            if ret_enc is None:
                if packed:
                    return chan.OK, (_NIL if result is None else packb(result))
                value = result  # immutable: the checks admit exact int/float/bool/str/None and tuples of them
            else:
                rctx = CallCtx(rt, ch.caller)
                value = ret_enc(result, rctx)
            if packed:
                value = packb(value)
            elif ret_wire is not None:
                ret_wire(value)
        except Exception as e:
            if rctx is not None:
                rctx.end_lends()
            return self._cannot_carry(m, e)
        if rctx is not None:
            for h in rctx.moved:  # encoded whole: now the handles move
                h.move_to(ch.caller)
        return chan.OK, value


def _caller_there(ch: chan.Channel) -> bool:
    """Does the caller still live?  The supervisor marks the channel before it reclaims
    the caller's objects; we wrote owners before looking (see Heap.take)."""
    fence()
    return ch.state == chan.OPEN


def _kind_of(e: BaseException) -> str:
    if isinstance(e, OwnershipError):
        return "OwnershipError"
    if isinstance(e, HeapExhausted):
        return "HeapExhausted"
    if isinstance(e, BadArgument):
        return "BadArgument"
    return "CallRejected"


def _declared_index(raises, e) -> int:
    for i, t in enumerate(raises):
        if isinstance(e, t):
            return i
    return 0


def _exc_args(e: BaseException) -> tuple:
    out = []
    for a in e.args:
        out.append(a if isinstance(a, (int, float, str, bytes, bool, type(None))) else repr(a))
    return tuple(out)


class DomainPanic(BaseException):
    """A panic of one domain of a group (DESIGN §7a), unwinding the shared thread to
    the boundary where that domain's code was entered (domains/group.py).  A
    BaseException so that no `except Exception` in the domain's own code stops it."""

    def __init__(self, domain: int, reason: str):
        super().__init__(domain, reason)
        self.domain = domain
        self.reason = reason


#: set by a group host: turns a panic into DomainPanic for the acting domain (it
#: must raise); None in a process of one domain, where a panic ends the process
_panic_hook = None


def set_panic_hook(fn) -> None:
    global _panic_hook
    _panic_hook = fn


def panic(reason: str) -> None:
    """An undeclared exception is a fault, like a Rust panic: log it and die now.

    The supervisor sees the death, fails in-flight calls with DomainCrashed,
    reclaims the domain's heap objects and restarts it by policy.  In a group host
    only the acting domain dies: the hook raises DomainPanic for it."""
    pending = sys.exc_info()[1]
    if isinstance(pending, DomainPanic):
        raise pending  # a domain already panicking (e.g. doomed by an injected fault) unwinds on
    sys.stderr.write(f"redleaf: domain panic: {reason}\n")
    traceback.print_exc()
    sys.stderr.flush()
    if _panic_hook is not None:
        _panic_hook(reason)
    os._exit(70)
