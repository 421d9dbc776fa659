"""The domain side of the heap: allocation without locks or supervisor round trips.

A domain holds leases: chunks (carved into one size class each) and free record
slots, refilled in bulk through `lease_fn` (an RPC to the supervisor).  Its free
lists are private Python lists: the shared state is only the records and the maps,
each with a single writer at a time (see manager.py for the crash-consistency
argument).  Objects freed by another domain (after a move) are rediscovered by
rescanning this domain's chunks' maps before asking for more memory.
"""

from __future__ import annotations

import struct

import numpy as np

from .arena import HeapFile
from .errors import HeapExhausted, OwnershipError
from .layout import (CHUNK, DOMAIN_ENTRY, F_GEN, F_OWNER, F_KIND, F_TYPE, J_FREE, JOURNAL, JOURNAL_OFF, K_RECORD,
                     K_VEC, MAX_CLASS, MIN_CLASS, R_FREE, R_LIVE, REC, REC_SIZE, UNIT)
from . import types as T
from .rref import RRef, RRefArray, RRefDeque, RRefVec, handle_from_record

# Shared fields are written with ONE aligned store each, through typed views of the
# mapping (`Heap._u16`, `Heap._u32`), never with struct.pack_into: CPython's struct zeroes
# the whole destination first and then writes it byte by byte, so a record's owner read
# 0 (the record pool) in between, to the manager's scans and to a SIGKILL landing there.
# The one pack_into left (_REST) covers fields nobody reads while the record is FREE.
_REST = struct.Struct("<IQQII")  # type_id, offset, size, borrower, parent (record bytes 12..39)
_W_GEN, _H_KIND = F_GEN >> 2, F_KIND >> 1   # u32 / u16 index of a field in a record
_J_OP, _J_SLOT, _J_MAP = 0, 1, 2                                   # u32 index in the journal
assert F_TYPE == 12 and JOURNAL.format == "<III"
_make_vec = None
RECORD_BATCH = 256
_MAX_SMALL = 1 << MAX_CLASS
assert CHUNK == 1 << 16 and UNIT == 1 << 6


class Heap:
    """One domain's view of the exchange heap."""

    def __init__(self, hf: HeapFile, domain_id: int, lease_fn, register_type_fn=None):
        self.hf = hf
        self.mem = hf.mem
        self.domain_id = domain_id
        self.lease_fn = lease_fn
        self.register_type_fn = register_type_fn
        lay = hf.layout
        self.rec_base = lay.records
        self.n_records = lay.n_records
        self.map_base = lay.maps
        self.arena = hf.arena_off
        self.arena_end = hf.arena_end
        self.max_domains = lay.max_domains
        self.journal_off = lay.domains + domain_id * DOMAIN_ENTRY + JOURNAL_OFF
        # typed views of the whole mapping: `v[byte_offset >> k] = x` is one aligned store
        self._u16 = hf.mem.cast("H")
        self._u32 = hf.mem.cast("I")
        assert self.rec_base % 8 == 0 and REC_SIZE % 8 == 0 and self.map_base % 4 == 0 \
            and self.journal_off % 4 == 0
        self.free_slots: list[int] = []
        self.free_lists = {k: [] for k in range(MIN_CLASS, MAX_CLASS + 1)}
        self.class_chunks = {k: [] for k in range(MIN_CLASS, MAX_CLASS + 1)}
        self.my_chunks: set[int] = set()
        self.runs: dict[int, list[int]] = {}  # run length -> first chunks of runs I lease
        self.registered: set[int] = set()
        self._vec_types: dict = {}

    def _lease(self, kind: str, count: int) -> list[int]:
        """Ask the supervisor for chunks or record slots.  Its refusal for lack of room
        arrives through whatever transport `lease_fn` uses (a control error whose
        `kind` names the manager's exception); it is raised here as HeapExhausted, the
        type callers are told to expect, never as a transport error."""
        try:
            return self.lease_fn(kind, count)
        except HeapExhausted:
            raise
        except Exception as e:
            if getattr(e, "kind", None) == "HeapExhausted":
                raise HeapExhausted(str(e)) from None
            raise

    @classmethod
    def open(cls, path: str, domain_id: int, lease_fn, register_type_fn=None) -> "Heap":
        return cls(HeapFile.open(path), domain_id, lease_fn, register_type_fn)

    def runtime_area(self, domain_id: int) -> memoryview:
        return self.hf.runtime_area(domain_id)

    def dma_window(self):
        return self.hf.dma_window()

    def close(self) -> None:
        for v in (self._u16, self._u32):   # views of the mapping: they must go for the unmap
            v.release()
        self.hf.close()

    # -- raw allocation -----------------------------------------------------------
    def _slot(self) -> int:
        if not self.free_slots:
            self.free_slots = list(self._lease("records", RECORD_BATCH))
            if not self.free_slots:
                raise HeapExhausted("no ownership records left; raise `records` in the manifest's [heap] section")
        return self.free_slots.pop()

    def _take_small(self, k: int) -> int:
        fl = self.free_lists[k]
        if fl:
            return fl.pop()
        if self._rescan(k):
            return fl.pop()
        c = self._lease("chunks", 1)[0]
        self.hf.chunks["klass"][c] = k
        self.my_chunks.add(c)
        self.class_chunks[k].append(c)
        base = self.arena + c * CHUNK
        fl.extend(range(base + CHUNK - (1 << k), base - 1, -(1 << k)))
        return fl.pop()

    def reserve(self, n: int, size: int) -> None:
        """Make sure `n` objects of `size` bytes can be allocated without a supervisor
        round trip each: chunks and record slots are leased in one request apiece.

        Why: `_take_small` leases one 64 KiB chunk per control request, which is a
        round trip every 16 packets (2 KiB) or 8 block requests; batch allocators
        (shared_heap.batch.RecordOps.alloc) reserve first.  Objects larger than the
        biggest size class are left to the ordinary path."""
        if n <= 0 or size > _MAX_SMALL:
            return
        k = (size - 1).bit_length() if size > 64 else MIN_CLASS
        fl = self.free_lists[k]
        if len(fl) < n:
            self._rescan(k)  # slots other domains freed in my chunks come first
        need = -(-(n - len(fl)) // (CHUNK >> k))
        if need > 0:
            for c in self._lease("chunks", need):
                self.hf.chunks["klass"][c] = k
                self.my_chunks.add(c)
                self.class_chunks[k].append(c)
                base = self.arena + c * CHUNK
                fl.extend(range(base + CHUNK - (1 << k), base - 1, -(1 << k)))
        if len(self.free_slots) < n:
            self.free_slots.extend(self._lease("records", n - len(self.free_slots)))

    def _rescan(self, k: int) -> bool:
        """Find slots in my chunks of class k freed by other domains."""
        fl = self.free_lists[k]
        step = (1 << k) // UNIT
        known = set(fl)
        maps = self.hf.maps
        for c in self.class_chunks[k]:
            free_units = np.flatnonzero(maps[c, ::step] == 0) * step
            base = self.arena + c * CHUNK
            for u in free_units:
                off = base + int(u) * UNIT
                if off not in known:
                    fl.append(off)
        return bool(fl)

    def _take_large(self, size: int) -> int:
        n = -(-size // CHUNK)
        maps = self.hf.maps
        for c in self.runs.get(n, ()):
            if maps[c, 0] == 0:
                return self.arena + c * CHUNK
        c = self._lease(f"run:{n}", 1)[0]
        self.runs.setdefault(n, []).append(c)
        return self.arena + c * CHUNK

    def _alloc_raw(self, size: int, kind: int, type_id: int) -> tuple[int, int, int]:
        if size <= 0:
            raise ValueError("object size must be positive")
        if size <= _MAX_SMALL:
            k = (size - 1).bit_length() if size > 64 else MIN_CLASS
            fl = self.free_lists[k]
            off = fl.pop() if fl else self._take_small(k)
        else:
            off = self._take_large(size)
        fs = self.free_slots
        if fs:
            slot = fs.pop()
        else:
            try:
                slot = self._slot()
            except BaseException:
                self._give_back(off, size)
                raise
        ro = self.rec_base + slot * REC_SIZE
        mem = self.mem
        u32 = self._u32
        w = ro >> 2
        gen = u32[w + _W_GEN]               # kept as it is (bumped by the last free)
        # the slot is FREE in my cache (its owner field already names me: leased to me
        # or freed by me): nobody reads these fields until "state LIVE"
        _REST.pack_into(mem, ro + F_TYPE, type_id, off, size, 0, 0)
        self._u16[(ro >> 1) + _H_KIND] = kind
        mem[ro] = R_LIVE
        u32[(self.map_base >> 2) + ((off - self.arena) >> 6)] = slot
        return slot, gen, off

    def _give_back(self, off: int, size: int) -> None:
        """Return an arena slot taken for an allocation that then failed."""
        if size <= _MAX_SMALL:
            self.free_lists[(size - 1).bit_length() if size > 64 else MIN_CLASS].append(off)

    def _free_raw(self, slot: int, rec: tuple | None = None) -> None:
        """Free a record this domain owns (checked by the caller: top-level, not lent).

        Order (crash argument in manager.py): journal -> state FREE -> gen+1 -> map 0.
        owner stays this domain (the slot joins its cache); borrower and parent are
        already 0 for an owned, top-level, unlent object.
        """
        mem = self.mem
        ro = self.rec_base + slot * REC_SIZE
        # `rec`: the record as the caller just read and checked it (saves a read)
        _st, _f, _k, _o, gen, _t, off, size, _b, _p = rec or REC.unpack_from(mem, ro)
        mapidx = (off - self.arena) >> 6
        u32 = self._u32
        jw = self.journal_off >> 2          # the journal, one store per field
        u32[jw + _J_SLOT] = slot
        u32[jw + _J_MAP] = mapidx
        u32[jw + _J_OP] = J_FREE
        mem[ro] = R_FREE
        u32[(ro >> 2) + _W_GEN] = (gen + 1) & 0xFFFFFFFF
        u32[(self.map_base >> 2) + mapidx] = 0
        self.free_slots.append(slot)
        if size <= _MAX_SMALL:
            if (off - self.arena) >> 16 in self.my_chunks:
                self.free_lists[(size - 1).bit_length() if size > 64 else MIN_CLASS].append(off)

    # -- record access for handles ----------------------------------------------------
    def record(self, slot: int) -> tuple:
        if not 0 < slot < self.n_records:
            raise OwnershipError(f"heap slot {slot} is out of range (1..{self.n_records - 1}): a forged handle")
        return REC.unpack_from(self.mem, self.rec_base + slot * REC_SIZE)

    def set_field(self, slot: int, field_off: int, value: int) -> None:
        """Write one u32 field (owner, borrower, parent) of a record: one aligned store,
        so a reader (or a kill) sees the old value or the new one, never 0 in between."""
        self._u32[(self.rec_base + slot * REC_SIZE + field_off) >> 2] = value

    def _register(self, tid: int, name: str, descr: str) -> None:
        if tid not in self.registered:
            self.registered.add(tid)
            if self.register_type_fn is not None:
                self.register_type_fn(tid, name, descr)

    # -- public allocation ---------------------------------------------------------------
    def alloc(self, rtype, **values):
        """A new zeroed object of @record type `rtype`, owned by this domain."""

        if not T.is_record_type(rtype):
            raise TypeError(f"{rtype!r} is not a @record type")
        self._register(rtype.type_id, rtype.type_name, str(rtype.dtype.descr))
        slot, gen, off = self._alloc_raw(rtype.size, K_RECORD, rtype.type_id)
        self.mem[off:off + rtype.size] = bytes(rtype.size)
        h = RRef._make(self, slot, gen, rtype.type_id, off, rtype.size, rtype)
        if values:
            v = h.np
            for k, x in values.items():
                v[k] = x
        return h

    def alloc_vec(self, dtype, n: int):
        """A runtime-sized array of a primitive numpy type (contents not zeroed)."""
        vt = self._vec_types.get(dtype)
        if vt is None:
            vt = self._vec_type(dtype)
        dt, tid, itemsize = vt
        size = n * itemsize if n > 0 else itemsize
        slot, gen, off = self._alloc_raw(size, K_VEC, tid)
        return _make_vec(self, slot, gen, tid, off, size, dt)

    def _vec_type(self, dtype):
        global _make_vec

        _make_vec = RRefVec._make
        dt = np.dtype(dtype)
        if dt.fields is not None or dt.hasobject or dt.subdtype is not None:
            raise TypeError("RRefVec holds a primitive numpy type; use alloc() for records")
        tid = T.vec_type_id(dt)
        self._register(tid, f"vec[{dt.str}]", dt.str)
        vt = self._vec_types[dtype] = (dt, tid, dt.itemsize)
        return vt

    def alloc_deque(self, elem, capacity: int):

        return RRefDeque._new(self, elem, capacity)

    def alloc_array(self, elem, length: int):

        return RRefArray._new(self, elem, length)

    # -- receiving handles ----------------------------------------------------------------
    def adopt(self, slot: int, gen: int, type_id: int | None, expect=None, elem=None):
        """A handle to an object moved to this domain; validated before any memory is touched.
        `type_id` None: take the type from the record (the receiver checks `expect`/`elem`)."""

        if not 0 < slot < self.n_records:
            self.record(slot)  # raises the forged-handle error
        st, _f, kind, owner, rgen, tid, off, size, _b, parent = REC.unpack_from(self.mem, self.rec_base + slot * REC_SIZE)
        if st != R_LIVE or rgen != gen:
            raise OwnershipError(f"stale handle: slot {slot} generation {gen} is not live (now {rgen})")
        if type_id is not None and tid != type_id:
            raise OwnershipError(f"handle type {type_id:#x} does not match the object's type {tid:#x}")
        if owner != self.domain_id or parent != 0:
            raise OwnershipError(f"slot {slot} is owned by domain {owner}, not by this domain ({self.domain_id})")
        try:
            return handle_from_record(self, slot, gen, kind, tid, off, size, expect, elem, borrowed=False)
        except OwnershipError:
            # it was moved to us, so it is ours to free: refusing it must not leak it
            try:
                handle_from_record(self, slot, gen, kind, tid, off, size, None, None, borrowed=False).drop()
            except OwnershipError:
                self._free_raw(slot)
            raise

    def adopt_borrowed(self, slot: int, gen: int, type_id: int | None, lender: int, expect=None, elem=None):

        st, _f, kind, owner, rgen, tid, off, size, borrower, parent = self.record(slot)
        if st != R_LIVE or rgen != gen:
            raise OwnershipError(f"stale handle: slot {slot} generation {gen} is not live")
        if type_id is not None and tid != type_id:
            raise OwnershipError(f"handle type {type_id:#x} does not match the object's type {tid:#x}")
        if owner != lender or borrower != self.domain_id or parent != 0:
            raise OwnershipError(f"slot {slot} was not lent to this domain by domain {lender}")
        return handle_from_record(self, slot, gen, kind, tid, off, size, expect, elem, borrowed=True)

    # -- receiving the arguments of a call ------------------------------------------------
    # A call's moved arguments stay owned by the caller until the callee takes them, all
    # or none: so a callee can tell "moved to me by this caller" from "mine already"
    # (it refuses the latter), a refused call leaves every argument with the caller, and
    # nothing the caller did not own at the moment of the call can be slipped in.  The
    # callee writes the owner field of records its caller owns; the caller does not
    # write them meanwhile (its proxy killed the handles for the call), and the
    # supervisor writes them only once the caller is dead, which `giver_alive` checks.

    def inspect_moved(self, slot: int, gen: int, giver: int, expect=None, elem=None):
        """Phase one of taking an object `giver` moves to this domain in a call: validate,
        write nothing.  The object must be live, of generation `gen`, top-level, unlent
        and owned by `giver` now.  The handle returned is usable after take().
        (The record is read inline, as in adopt: this runs for every moved argument.)"""
        if not 0 < slot < self.n_records:
            self.record(slot)  # raises the forged-handle error
        st, _f, kind, owner, rgen, tid, off, size, borrower, parent = REC.unpack_from(self.mem,
                                                                                    self.rec_base + slot * REC_SIZE)
        if st != R_LIVE or rgen != gen:
            raise OwnershipError(f"stale handle: slot {slot} generation {gen} is not live (now {rgen})")
        if owner != giver or parent != 0:
            raise OwnershipError(f"slot {slot} is owned by domain {owner}, not by the caller (domain {giver}): "
                                 "a call can move only objects its caller owns")
        if borrower:
            raise OwnershipError(f"slot {slot} is lent to domain {borrower}; it cannot be moved during the loan")
        return handle_from_record(self, slot, gen, kind, tid, off, size, expect, elem, borrowed=False)

    def take(self, handles: list, giver: int, giver_alive) -> None:
        """Phase two: make the objects of `handles` (from inspect_moved) this domain's,
        all or none.  `giver_alive()` must fence and then say whether `giver` still
        lives: once it is dead the supervisor reclaims its records, so an owner written
        after that is given back (to the dead id, which the supervisor's sweep frees)
        rather than kept.  Raises OwnershipError when nothing was taken."""
        mem, u32 = self.mem, self._u32
        taken = []
        ok = giver_alive()
        if ok:
            for h in handles:
                base = self.rec_base + h.slot * REC_SIZE
                st, _f, _k, owner, gen, _t, _o, _s, borrower, parent = REC.unpack_from(mem, base)
                if st != R_LIVE or gen != h.gen or owner != giver or borrower or parent:
                    ok = False
                    break
                u32[(base + F_OWNER) >> 2] = self.domain_id
                taken.append(h)
            ok = ok and giver_alive()
        if ok:
            return
        for h in taken:
            u32[(self.rec_base + h.slot * REC_SIZE + F_OWNER) >> 2] = giver
        for h in handles:
            h.invalidate()
        raise OwnershipError(f"the arguments changed hands during the call (the caller, domain {giver}, "
                             "died or reused them); nothing was taken")
