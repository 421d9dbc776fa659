"""Handles to heap objects: RRef[T], RRefVec, RRefArray[T], RRefDeque[T].

A handle is (slot, generation, type).  Every access re-reads the ownership record
and refuses (OwnershipError) before touching memory if the object is not live, the
generation moved on, or this domain neither owns it nor holds it on loan.  After a
move or drop the Python handle is dead.  Access is zero-copy: `.buf` is a memoryview
of exactly the object, `.np` a numpy view on the mapping (read-only when borrowed).
"""

from __future__ import annotations

import struct
from typing import Generic, TypeVar

import numpy as np

from .errors import OwnershipError
from .layout import R_DEFERRED, REC, F_BORROWER, F_OWNER, F_PARENT, K_ARRAY, K_DEQUE, K_RECORD, K_VEC, R_LIVE, REC_SIZE
from . import types as T

E = TypeVar("E")
_OWNED, _BORROWED, _DEAD = 0, 1, 2
_CHECK = struct.Struct("<B3xII")  # state, owner, gen
_BORROWER = struct.Struct("<I")
_PAIR = struct.Struct("<II")
_DQ_HDR = struct.Struct("<IIII")  # head, length, capacity, element type id
DQ_HDR = 16


class _Handle:
    __slots__ = ("heap", "slot", "gen", "type_id", "offset", "size", "mode", "elem_type", "__weakref__")
    KIND = -1

    @classmethod
    def _make(cls, heap, slot, gen, tid, off, size, elem, mode=_OWNED):
        h = object.__new__(cls)
        h.heap, h.slot, h.gen, h.type_id, h.offset, h.size, h.elem_type, h.mode = \
            heap, slot, gen, tid, off, size, elem, mode
        return h

    def __init__(self, *a, **k):
        raise TypeError("heap handles come from Heap.alloc*/adopt, not from the constructor")

    # -- validation ----------------------------------------------------------------
    def _check(self) -> None:
        if self.mode == _DEAD:
            raise OwnershipError(f"this {type(self).__name__} handle is dead (moved, dropped, or its borrow ended)")
        h = self.heap
        st, owner, gen = _CHECK.unpack_from(h.mem, h.rec_base + self.slot * REC_SIZE)
        if gen != self.gen or not (st == R_LIVE or (st == R_DEFERRED and self.mode == _BORROWED)):
            self.mode = _DEAD
            raise OwnershipError(f"heap object (slot {self.slot}, generation {self.gen}) no longer exists "
                                 f"(freed, reclaimed, or its slot reused: record generation is {gen})")
        if self.mode == _OWNED:
            if owner != h.domain_id:
                raise OwnershipError(f"heap object (slot {self.slot}) is owned by domain {owner}, not {h.domain_id}")
        else:
            b = _BORROWER.unpack_from(h.mem, h.rec_base + self.slot * REC_SIZE + F_BORROWER)[0]
            if b != h.domain_id:
                self.mode = _DEAD
                raise OwnershipError(f"the borrow of slot {self.slot} has ended")

    def _check_owned(self) -> None:
        self._check()
        if self.mode != _OWNED:
            raise OwnershipError("a borrowed handle cannot be moved, lent or dropped; it belongs to the lender")

    def _check_unlent(self) -> None:
        """Owned, top-level use that ends or transfers ownership: refused while on loan."""
        self._check_owned()
        h = self.heap
        b = _BORROWER.unpack_from(h.mem, h.rec_base + self.slot * REC_SIZE + F_BORROWER)[0]
        if b:
            raise OwnershipError(f"heap object (slot {self.slot}) is lent to domain {b}; "
                                 "call end_lend() when the borrowing call returns, then retry")

    @property
    def alive(self) -> bool:
        return self.mode != _DEAD

    @property
    def borrowed(self) -> bool:
        return self.mode == _BORROWED

    @property
    def buf(self) -> memoryview:
        self._check()
        v = self.heap.mem[self.offset:self.offset + self.size]
        return v.toreadonly() if self.mode == _BORROWED else v

    def to_bytes(self) -> bytes:
        return bytes(self.buf)

    def wire(self) -> tuple[int, int, int]:
        return self.slot, self.gen, self.type_id

    # -- ownership ------------------------------------------------------------------
    def move_to(self, domain_id: int) -> tuple[int, int, int]:
        """Give the object to another domain; this handle dies.  Returns the wire form."""
        h = self.heap
        if not 0 < domain_id < h.max_domains:
            raise _bad_target(domain_id, h.max_domains)
        if self.mode == _OWNED:  # fast path: one read of the record checks everything
            base = h.rec_base + self.slot * REC_SIZE
            st, _f, _k, owner, gen, _t, _o, _s, borrower, _p = REC.unpack_from(h.mem, base)
            if st == R_LIVE and gen == self.gen and owner == h.domain_id and not borrower:
                h._u32[(base + F_OWNER) >> 2] = domain_id   # one store: old owner or new, never 0
                self.mode = _DEAD
                return self.slot, self.gen, self.type_id
        self._check_unlent()  # raises the precise error
        self.heap.set_field(self.slot, F_OWNER, domain_id)
        self.mode = _DEAD
        return self.slot, self.gen, self.type_id

    def lend_to(self, domain_id: int) -> None:
        """Let `domain_id` read the object during one call; `end_lend()` takes it back."""
        if not 0 < domain_id < self.heap.max_domains:
            raise _bad_target(domain_id, self.heap.max_domains)
        self._check_unlent()
        self.heap.set_field(self.slot, F_BORROWER, domain_id)

    def end_lend(self) -> None:
        if self.mode == _OWNED:
            self.heap.set_field(self.slot, F_BORROWER, 0)

    def invalidate(self) -> None:
        self.mode = _DEAD

    def check_movable(self) -> None:
        """Raise OwnershipError unless this domain may give the object away now: live,
        owned (not borrowed), not lent out.  Writes nothing (a call checks every
        argument before any of them moves).

        Why a fast path: every moved argument and moved return value runs this; one
        read of the record answers the common case, where _check_unlent's three
        layers re-read it twice.  Anything else falls through to _check_unlent,
        which raises the precise error (and marks a stale handle dead)."""
        if self.mode == _OWNED:
            h = self.heap
            st, _f, _k, owner, gen, _t, _o, _s, borrower, _p = REC.unpack_from(h.mem, h.rec_base + self.slot * REC_SIZE)
            if st == R_LIVE and gen == self.gen and owner == h.domain_id and not borrower:
                return
        self._check_unlent()

    def revive(self) -> bool:
        """After a call that did not take this handle's object (the callee refused the
        call or died before taking it), make the handle usable again.  Only if the
        record still says so: live, this generation, owned by this domain, top-level
        and unlent.  Returns whether the handle is alive again."""
        if self.mode != _DEAD:
            return True
        h = self.heap
        st, _f, _k, owner, gen, _t, _o, _s, borrower, parent = REC.unpack_from(h.mem, h.rec_base + self.slot * REC_SIZE)
        if st == R_LIVE and gen == self.gen and owner == h.domain_id and not borrower and not parent:
            self.mode = _OWNED
            return True
        return False

    def drop(self) -> None:
        """Free the object now (containers free their elements too)."""
        h = self.heap
        if self.mode == _OWNED and self.KIND == K_VEC:
            # fast path: one read of the record validates everything a free needs
            rec = REC.unpack_from(h.mem, h.rec_base + self.slot * REC_SIZE)
            st, _f, _k, owner, gen, _t, _o, _s, borrower, parent = rec
            if st == R_LIVE and gen == self.gen and owner == h.domain_id and not borrower \
                    and not parent:
                h._free_raw(self.slot, rec)
                self.mode = _DEAD
                return
        self._check_unlent()
        self._drop_contents()
        self.heap._free_raw(self.slot)
        self.mode = _DEAD

    def _drop_contents(self) -> None:
        pass

    def __repr__(self):
        state = ("owned", "borrowed", "dead")[self.mode]
        return f"<{type(self).__name__} slot={self.slot} gen={self.gen} {self.size}B {state}>"


def _bad_target(domain_id, max_domains: int) -> ValueError:
    # id 0 is the heap's record pool: an object given to it is never freed by anyone
    return ValueError(f"cannot give a heap object to domain {domain_id!r}: domain ids run from 1 to "
                      f"{max_domains - 1} (0 is the heap's record pool, not a domain)")


class RRef(_Handle, Generic[E]):
    """RRef[T]: a handle to one @record object in the exchange heap."""

    __slots__ = ()
    KIND = K_RECORD

    @property
    def np(self):
        """A numpy structured scalar viewing the object (writes go to the heap)."""
        arr = np.frombuffer(self.buf, dtype=self.elem_type.dtype, count=1)
        return arr[0]

    @property
    def value(self):
        return self.np

    def __getitem__(self, field):
        return self.np[field]

    def __setitem__(self, field, value):
        self.np[field] = value


class RRefVec(_Handle):
    """A runtime-sized array of a primitive numpy type in the exchange heap."""

    __slots__ = ()
    KIND = K_VEC

    @property
    def np(self) -> np.ndarray:
        return np.frombuffer(self.buf, dtype=self.elem_type)

    def __len__(self):
        return self.size // self.elem_type.itemsize


def _elem_tid(elem) -> int:
    if T.is_record_type(elem):
        return elem.type_id
    if elem is RRefVec:
        return 0
    raise TypeError(f"containers hold @record objects or RRefVecs, not {elem!r}")


class _Container(_Handle):
    __slots__ = ()
    TID = 0  # the container's type id (T.ARRAY_TID, T.DEQUE_TID)

    @classmethod
    def _new_container(cls, heap, elem, n: int, zero: bool):
        """Header (head, length, n, element type) and n (slot, gen) element pairs."""
        heap._register(cls.TID, cls.__name__, "container")
        etid = _elem_tid(elem)   # validate before allocating anything
        size = DQ_HDR + 8 * max(1, n)
        slot, gen, off = heap._alloc_raw(size, cls.KIND, cls.TID)
        if zero:
            heap.mem[off:off + size] = bytes(size)
        _DQ_HDR.pack_into(heap.mem, off, 0, 0, n, etid)
        return cls._make(heap, slot, gen, cls.TID, off, size, elem)

    def _elem_from(self, slot: int, gen: int) -> _Handle:
        """Take element (slot, gen) out of this container: validated, made top-level."""
        h = self.heap
        st, _f, kind, owner, rgen, tid, off, size, _b, parent = h.record(slot)
        if st != R_LIVE or rgen != gen or parent != self.slot:
            raise OwnershipError(f"container element slot {slot} is not a live element of this container")
        h.set_field(slot, F_OWNER, h.domain_id)
        h.set_field(slot, F_PARENT, 0)
        return handle_from_record(h, slot, gen, kind, tid, off, size, None, None, borrowed=False)

    def _drop_strays(self) -> None:
        """Free elements still parented here that no valid entry named (a misbehaving
        domain overwrote the entries or the header).  Why: dropping a container must not
        fail half-way and leave its elements behind; they are found in the ownership
        table (a scan, only on this rare path).  Only this domain writes them."""
        rec = self.heap.hf.records
        for s in np.flatnonzero((rec["state"] == R_LIVE) & (rec["parent"] == self.slot)).tolist():
            try:
                self._elem_from(s, int(rec["gen"][s])).drop()
            except OwnershipError:
                pass

    def _put(self, x: _Handle) -> tuple[int, int]:
        if not isinstance(x, _Handle):
            raise TypeError(f"containers hold heap handles, got {type(x).__name__}")
        x._check_unlent()
        elem = self.elem_type
        if T.is_record_type(elem) and x.type_id != elem.type_id:
            raise TypeError(f"this container holds {elem.type_name}, got type {x.type_id:#x}")
        if elem is RRefVec and not isinstance(x, RRefVec):
            raise TypeError("this container holds RRefVecs")
        self.heap.set_field(x.slot, F_PARENT, self.slot)
        x.mode = _DEAD
        return x.slot, x.gen


class RRefArray(_Container, Generic[E]):
    """RRefArray[T]: a fixed-length array of element handles (None = empty)."""

    __slots__ = ()
    KIND = K_ARRAY
    TID = T.ARRAY_TID

    @classmethod
    def _new(cls, heap, elem, length: int):
        return cls._new_container(heap, elem, length, zero=True)  # empty slots read as (0, 0)

    def __len__(self):
        self._check()
        return _DQ_HDR.unpack_from(self.heap.mem, self.offset)[2]

    def _idx(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return self.offset + DQ_HDR + 8 * (i % n)

    def put(self, i: int, x) -> None:
        self._check_owned()
        at = self._idx(i)
        if _PAIR.unpack_from(self.heap.mem, at)[0]:
            raise ValueError(f"index {i} is occupied; take() it first")
        _PAIR.pack_into(self.heap.mem, at, *self._put(x))

    def take(self, i: int):
        self._check_owned()
        at = self._idx(i)
        slot, gen = _PAIR.unpack_from(self.heap.mem, at)
        if not slot:
            return None
        _PAIR.pack_into(self.heap.mem, at, 0, 0)
        return self._elem_from(slot, gen)

    def _drop_contents(self):
        forged = False
        for i in range(len(self)):
            try:
                x = self.take(i)
            except OwnershipError:
                forged = True  # an entry a misbehaving domain wrote: not trusted, skipped
                continue
            if x is not None:
                x.drop()
        if forged:
            self._drop_strays()


class RRefDeque(_Container, Generic[E]):
    """RRefDeque[T]: a bounded ring of element handles (push_back / pop_front)."""

    __slots__ = ()
    KIND = K_DEQUE
    TID = T.DEQUE_TID

    @classmethod
    def _new(cls, heap, elem, capacity: int):
        return cls._new_container(heap, elem, capacity, zero=False)  # only [head, head+len) is read

    def _hdr(self):
        head, n, cap, _t = _DQ_HDR.unpack_from(self.heap.mem, self.offset)
        if cap * 8 + DQ_HDR > self.size or head >= max(cap, 1) or n > cap:
            raise OwnershipError("corrupt RRefDeque header (written by a misbehaving domain)")
        return head, n, cap

    def __len__(self):
        self._check()
        return self._hdr()[1]

    @property
    def capacity(self) -> int:
        self._check()
        return self._hdr()[2]

    def push_back(self, x) -> None:
        self._check_owned()
        head, n, cap = self._hdr()
        if n >= cap:
            raise OverflowError(f"RRefDeque is full ({cap} elements)")
        at = self.offset + DQ_HDR + 8 * ((head + n) % cap)
        _PAIR.pack_into(self.heap.mem, at, *self._put(x))
        struct.pack_into("<I", self.heap.mem, self.offset + 4, n + 1)

    def pop_front(self):
        self._check_owned()
        head, n, cap = self._hdr()
        if n == 0:
            return None
        at = self.offset + DQ_HDR + 8 * head
        slot, gen = _PAIR.unpack_from(self.heap.mem, at)
        struct.pack_into("<II", self.heap.mem, self.offset, (head + 1) % cap, n - 1)
        return self._elem_from(slot, gen)

    def __iter__(self):
        """Drain: yields and removes elements front to back."""
        while True:
            x = self.pop_front()
            if x is None:
                return
            yield x

    def _drop_contents(self):
        forged = False
        while True:
            try:
                self._hdr()
            except OwnershipError:
                forged = True
                break
            try:
                x = self.pop_front()  # (the head moves past an entry even if it is refused)
            except OwnershipError:
                forged = True  # an entry a misbehaving domain wrote: not trusted, skipped
                continue
            if x is None:
                break
            x.drop()
        if forged:
            self._drop_strays()


_KIND_CLASS = {K_RECORD: RRef, K_VEC: RRefVec, K_ARRAY: RRefArray, K_DEQUE: RRefDeque}


def handle_from_record(heap, slot, gen, kind, tid, off, size, expect, elem, borrowed: bool):
    cls = _KIND_CLASS.get(kind)
    if cls is None:
        raise OwnershipError(f"slot {slot} has an unknown handle kind {kind}")
    if expect is not None and cls is not expect:
        raise OwnershipError(f"expected a {expect.__name__}, the object is a {cls.__name__}")
    if kind == K_RECORD:
        et = T.lookup_type(tid)
        if et is None:
            raise OwnershipError(f"record type {tid:#x} is not known in this process (import its module)")
        if elem is not None and et is not elem:
            raise OwnershipError(f"expected RRef[{elem.__qualname__}], got RRef[{et.__qualname__}]")
    elif kind == K_VEC:
        et = T.lookup_vec(tid)
        if et is None:
            raise OwnershipError(f"vector type {tid:#x} is not known")
    else:
        etid = _DQ_HDR.unpack_from(heap.mem, off)[3]
        et = RRefVec if etid == 0 else T.lookup_type(etid)
        if et is None:
            raise OwnershipError(f"container element type {etid:#x} is not known in this process")
        if elem is not None and et is not elem:
            raise OwnershipError(f"expected a container of {getattr(elem, '__qualname__', elem)}")
    h = object.__new__(cls)  # _make, inlined: every received handle comes through here
    h.heap, h.slot, h.gen, h.type_id, h.offset, h.size, h.elem_type, h.mode = \
        heap, slot, gen, tid, off, size, et, _BORROWED if borrowed else _OWNED
    return h
