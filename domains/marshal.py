"""Turning arguments into channel payloads and back, checked against the interface.

Each `TypeDesc` compiles into three small functions, built once per method:
`check` (caller side, before anything is moved: so a bad third argument cannot leave
the first one moved), `encode` (stages heap handles to move or lends them, and
produces msgpack-able values) and `decode` (the receiving side: re-validates
everything, never trusting the sender).

Moves are all-or-nothing (DESIGN §5a: forged, foreign or duplicated handles are
refused before anything moves):
- a call's moved arguments stay owned by the caller: the proxy checks each is its own,
  unlent and named once, then only kills its handles; the callee checks every one
  again (owned by *the caller*, live, unlent, named once) and then takes them all
  (`Heap.inspect_moved` / `Heap.take`) or none.  A refused call leaves every argument
  with the caller, whose proxy revives the handles;
- a return value's handles are staged the same way and moved by the callee only once
  the whole value has been encoded.

Wire form: msgpack with tuples as arrays, and ext types for what is not a plain value.
Plain ints travel as msgpack ints, so every int the checks accept lies in msgpack's
range, -2**63 .. 2**64-1.

May call: domains.errors, domains.interface, shared_heap (handles and the heap).
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import msgpack

from .errors import BadArgument, CallOwnershipError
from .interface import MAX_INLINE, TypeDesc

EXT_IFACE = 3
EXT_RECORD = 4

_TID = struct.Struct("<I")
INT_MIN, INT_END = -(1 << 63), 1 << 64  # msgpack's int range: [INT_MIN, INT_END)


def rref_wire(slot: int, gen: int) -> int:
    """A heap handle on the wire: one integer, slot | generation << 32.

    The receiver's decoder is compiled from the interface, so it knows a value is
    a moved or borrowed RRef of which class; the type comes from the ownership
    record itself (authoritative), never from the sender."""
    return slot | gen << 32
class CallCtx:
    """Per-call bookkeeping: the peer, and the handles to settle after the call.

    `taking`: this end receives a call's arguments, whose moved handles are still
    the peer's and are taken (all or none) after decoding; otherwise it receives a
    return value, whose handles the peer has moved already."""

    __slots__ = ("rt", "peer", "taking", "seen", "lent", "moved", "adopted", "incoming", "borrowed_in")

    def __init__(self, rt, peer: int, taking: bool = False):
        self.rt = rt
        self.peer = peer
        self.taking = taking
        self.seen: set = set()  # slots named so far in this message: each may appear once
        self.lent: list = []  # sender: handles lent for this call, returned afterwards
        self.moved: list = []  # sender: handles staged to move, settled once encoded
        self.adopted: list = []  # receiver: handles now owned
        self.incoming: list = []  # callee: handles validated, to be taken after decoding
        self.borrowed_in: list = []  # callee: read-only handles to invalidate after the call

    def once(self, slot: int, where: str) -> None:
        if slot in self.seen:
            raise CallOwnershipError(f"{where}: heap object (slot {slot}) is named twice in one call; "
                                     "each handle can be passed once")
        self.seen.add(slot)

    def end_lends(self) -> None:
        for h in self.lent:
            h.end_lend()
        self.lent = []

    def revive_moved(self) -> None:
        """The call did not take the staged objects: the caller's handles live again."""
        for h in self.moved:
            h.revive()


def _bad(where: str, desc: TypeDesc, v) -> BadArgument:
    return BadArgument(f"{where}: expected {desc.name}, got {type(v).__name__}")


def compile_check(desc: TypeDesc, where: str) -> Callable[[Any], None]:
    """The checks of plain values (scalar, str, bytes, None) take `(v, ctx=None)` and
    return `v`, so that they are their own decoders (compile_decode): one call per
    argument on the receiving side, with the very code the sender ran."""
    k = desc.kind
    if k == "scalar":
        py = desc.py
        if py is float:
            def check(v, ctx=None):
                if type(v) is not float:
                    if type(v) is not int:
                        raise _bad(where, desc, v)
                    if not INT_MIN <= v < INT_END:  # an int travels as an int
                        raise BadArgument(f"{where}: int {v} is outside msgpack's range "
                                          f"(-2**63 .. 2**64-1); pass float({v}) instead")
                return v
        elif py is int:
            def check(v, ctx=None):
                if type(v) is not int:
                    raise _bad(where, desc, v)
                if not INT_MIN <= v < INT_END:
                    raise BadArgument(f"{where}: int {v} is outside the range a call can carry "
                                      f"(-2**63 .. 2**64-1, msgpack's)")
                return v
        else:
            def check(v, ctx=None):
                if type(v) is not bool:
                    raise _bad(where, desc, v)
                return v
        return check
    if k in ("str", "bytes"):
        py = desc.py

        def check(v, ctx=None):
            if type(v) is not py:
                if not (py is bytes and isinstance(v, (bytearray, memoryview))):
                    raise _bad(where, desc, v)
            if len(v) > MAX_INLINE:
                raise BadArgument(f"{where}: {desc.name} of {len(v)} bytes exceeds the {MAX_INLINE}-byte "
                                  f"inline limit; put large data in an RRefVec")
            return v
        return check
    if k == "none":
        def check(v, ctx=None):
            if v is not None:
                raise _bad(where, desc, v)
            return v
        return check
    if k == "optional":
        inner = compile_check(desc.args[0], where)

        def check(v):
            if v is not None:
                inner(v)
        return check
    if k == "tuple":
        inners = [compile_check(a, f"{where}[{i}]") for i, a in enumerate(desc.args)]

        def check(v):
            if not isinstance(v, tuple) or len(v) != len(inners):
                raise _bad(where, desc, v)
            for c, x in zip(inners, v):
                c(x)
        return check
    if k == "vartuple":
        inner = compile_check(desc.args[0], f"{where}[]")

        def check(v):
            if not isinstance(v, tuple):
                raise _bad(where, desc, v)
            if len(v) > MAX_INLINE // 8:
                raise BadArgument(f"{where}: tuple of {len(v)} items is too long to copy; use an RRefArray")
            for x in v:
                inner(x)
        return check
    if k == "record":
        py = desc.py

        def check(v):
            if not py.accepts(v):
                raise _bad(where, desc, v)
        return check
    if k == "rref":
        cls = desc.py
        elem = desc.args[0] if desc.args else None

        def check(v):
            if not isinstance(v, cls):
                raise _bad(where, desc, v)
            if elem is not None and getattr(v, "elem_type", elem) is not elem:
                raise BadArgument(f"{where}: expected {desc.name}, got a handle of {getattr(v, 'elem_type', '?')}")
            if not v.alive:
                raise CallOwnershipError(f"{where}: this {cls.__name__} handle is dead (moved, dropped, or its "
                                         "borrow ended); a handle can be used until it is moved, not after")
        return check
    if k == "iface":
        from .proxy import is_capability

        def check(v):
            if not is_capability(v, desc.py):
                raise _bad(where, desc, v)
        return check
    raise AssertionError(k)


def compile_encode(desc: TypeDesc, where: str = "argument") -> Callable[[Any, CallCtx], Any] | None:
    """None means: the value goes on the wire as it is.  Nothing here moves a handle:
    moved ones are staged in `ctx.moved` (see the module docstring)."""
    k = desc.kind
    if k in ("scalar", "str", "none"):
        return None
    if k == "bytes":
        return lambda v, ctx: v if type(v) is bytes else bytes(v)
    if k == "optional":
        inner = compile_encode(desc.args[0], where)
        if inner is None:
            return None
        return lambda v, ctx: None if v is None else inner(v, ctx)
    if k in ("tuple", "vartuple"):
        inners = [compile_encode(a, where) for a in desc.args]
        if all(i is None for i in inners):
            return None
        if k == "vartuple":
            inner = inners[0]
            return lambda v, ctx: [inner(x, ctx) for x in v]
        return lambda v, ctx: [x if e is None else e(x, ctx) for e, x in zip(inners, v)]
    if k == "record":
        return lambda v, ctx: msgpack.ExtType(EXT_RECORD, _TID.pack(desc.py.type_id) + desc.py.to_bytes(v))
    if k == "rref":
        from redleaf.shared_heap import OwnershipError
        borrowed = desc.borrowed

        def enc(v, ctx):
            slot = v.slot  # ctx.once, inlined: this runs for every handle of every call
            seen = ctx.seen
            if slot in seen:
                ctx.once(slot, where)  # raises the named-twice error
            seen.add(slot)
            try:
                if borrowed:
                    v.lend_to(ctx.peer)
                else:
                    v.check_movable()
            except OwnershipError as e:
                raise CallOwnershipError(f"{where}: {e}") from None
            (ctx.lent if borrowed else ctx.moved).append(v)
            return slot | v.gen << 32
        return enc
    if k == "iface":
        from .proxy import capability_wire
        return lambda v, ctx: msgpack.ExtType(EXT_IFACE, msgpack.packb(capability_wire(v, ctx.rt)))
    raise AssertionError(k)


def compile_decode(desc: TypeDesc, where: str) -> Callable[[Any, CallCtx], Any]:
    """Validate a received value (never trust the sender) and turn wire forms into objects."""
    k = desc.kind
    if k in ("scalar", "str", "bytes", "none"):
        return compile_check(desc, where)  # checks `w` and returns it
    if k == "optional":
        inner = compile_decode(desc.args[0], where)
        return lambda w, ctx: None if w is None else inner(w, ctx)
    if k in ("tuple", "vartuple"):
        if k == "tuple":
            inners = [compile_decode(a, f"{where}[{i}]") for i, a in enumerate(desc.args)]

            def dec(w, ctx):
                if not isinstance(w, (tuple, list)) or len(w) != len(inners):
                    raise _bad(where, desc, w)
                return tuple(d(x, ctx) for d, x in zip(inners, w))
        else:
            inner = compile_decode(desc.args[0], f"{where}[]")

            def dec(w, ctx):
                if not isinstance(w, (tuple, list)):
                    raise _bad(where, desc, w)
                return tuple(inner(x, ctx) for x in w)
        return dec
    if k == "record":
        py = desc.py

        def dec(w, ctx):
            if not isinstance(w, msgpack.ExtType) or w.code != EXT_RECORD or len(w.data) < 4:
                raise _bad(where, desc, w)
            if _TID.unpack_from(w.data)[0] != py.type_id:
                raise BadArgument(f"{where}: record of another type sent as {desc.name}")
            return py.from_bytes(w.data[4:])
        return dec
    if k == "rref":
        cls = desc.py
        elem = desc.args[0] if desc.args else None
        if desc.borrowed:
            def dec(w, ctx):
                if type(w) is not int or not 0 <= w < 1 << 64:
                    raise _bad(where, desc, w)
                ctx.once(w & 0xFFFFFFFF, where)
                h = ctx.rt.heap.adopt_borrowed(w & 0xFFFFFFFF, w >> 32, None, ctx.peer, expect=cls, elem=elem)
                ctx.borrowed_in.append(h)
                return h
        else:
            def dec(w, ctx):
                if type(w) is not int or not 0 <= w < 1 << 64:
                    raise _bad(where, desc, w)
                slot = w & 0xFFFFFFFF
                seen = ctx.seen  # ctx.once, inlined: this runs for every handle of every call
                if slot in seen:
                    ctx.once(slot, where)  # raises the named-twice error
                seen.add(slot)
                if ctx.taking:  # still the caller's: validated now, taken after decoding
                    h = ctx.rt.heap.inspect_moved(slot, w >> 32, ctx.peer, cls, elem)
                    ctx.incoming.append(h)
                else:  # a return value: the callee moved it to us already
                    h = ctx.rt.heap.adopt(slot, w >> 32, None, cls, elem)
                    ctx.adopted.append(h)
                return h
        return dec
    if k == "iface":
        from .proxy import capability_from_wire
        iface = desc.py

        def dec(w, ctx):
            if not isinstance(w, msgpack.ExtType) or w.code != EXT_IFACE:
                raise _bad(where, desc, w)
            return capability_from_wire(msgpack.unpackb(w.data, raw=False), iface, ctx.rt)
        return dec
    raise AssertionError(k)


def compile_wire(desc: TypeDesc) -> Callable[[Any], None] | None:
    """The co-located transport's stand-in for packb, on an encoded value: raise what
    packb would raise, or nothing.  None: nothing of this type can fail to encode.

    Of the values the checks let through, the only ones msgpack refuses are strs
    that UTF-8 cannot encode (lone surrogates, e.g. from os.fsdecode): everything
    else is an int in msgpack's range (checked), a float, bool, None, bytes (the
    encoder made them bytes), an ExtType, or an array of those.  str.encode raises
    the very UnicodeEncodeError (type and message) that msgpack's packer raises,
    and the walk goes in wire order, so the first bad str is the one packb names."""
    k = desc.kind
    if k == "str":
        def wire(v):
            if not v.isascii():
                v.encode("utf-8")
        return wire
    if k == "optional":
        inner = compile_wire(desc.args[0])
        if inner is None:
            return None
        return lambda v: None if v is None else inner(v)
    if k in ("tuple", "vartuple"):
        inners = [compile_wire(a) for a in desc.args]
        if all(i is None for i in inners):
            return None
        if k == "vartuple":
            inner = inners[0]

            def wire(v):
                for x in v:
                    inner(x)
        else:
            def wire(v):
                for w, x in zip(inners, v):
                    if w is not None:
                        w(x)
        return wire
    return None


def packb(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpackb(buf):
    return msgpack.unpackb(buf, raw=False, use_list=False, strict_map_key=True)
