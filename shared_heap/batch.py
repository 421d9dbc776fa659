"""Batch operations on heap records of one type: allocate, free, and move whole
batches in and out of `RRefDeque`s with numpy over the ownership table.

Why: popping and pushing one handle at a time costs a few microseconds of Python
per element (a record read, checks, a handle object), more than a whole packet's or
block request's budget.  `RecordOps` works on *heap offsets* of the objects (for a
record whose buffer comes first, the offset is also its DMA address) and validates
and moves a batch with a handful of vector operations, with the same checks and the
same write order as `RRefDeque.push_back` / `pop_front` (entry, then the element's
parent as the commit, then the deque's length), so a domain killed in the middle
leaves the heap as recoverable as the one-at-a-time path would.

The objects stay ordinary heap objects: a handle-based domain can pop them from the
same deque, the supervisor reclaims them with their owner, the checker sees them.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

from .errors import OwnershipError
from .layout import K_RECORD, R_LIVE, REC_SIZE, RECORD_DTYPE, UNIT
from .rref import DQ_HDR

_HDR = struct.Struct("<IIII")
# u32 word index of each record field (layout.RECORD_DTYPE)
_W_STATE, _W_OWNER, _W_GEN, _W_TYPE = 0, 1, 2, 3
_W_BORROWER, _W_PARENT = 8, 9
assert [RECORD_DTYPE.fields[f][1] // 4 for f in ("state", "owner", "gen", "type_id", "offset", "borrower",
                                                 "parent")] == [0, 1, 2, 3, 4, 8, 9]
assert REC_SIZE == 40

EMPTY = np.empty(0, dtype=np.int64)
try:  # the C function behind np.count_nonzero (whose Python wrapper costs as much again)
    from numpy._core._multiarray_umath import count_nonzero
except ImportError:  # pragma: no cover - other numpy layouts
    count_nonzero = np.count_nonzero


def ownership_errors_as(error_type):
    """Decorator for a batch method of a domain: an OwnershipError out of it (a
    client's forged or malformed deque, refused by RecordOps) becomes the
    interface's declared `error_type`, so the caller gets its own error back
    instead of the callee panicking on an undeclared exception."""
    def wrap(method):
        name = method.__name__

        @functools.wraps(method)
        def checked(self, *args):
            try:
                return method(self, *args)
            except OwnershipError as e:
                raise error_type(f"{name}: {e}") from None
        return checked
    return wrap


_UNIT_SHIFT = UNIT.bit_length() - 1


def has_duplicates(slots: np.ndarray) -> bool:
    s = np.sort(slots)
    return bool(count_nonzero(s[1:] == s[:-1]))


_FIELD_VIEW = {"<u8": np.uint64, "<u4": np.uint32, "<i8": np.int64, "<i4": np.int32,
               "|u1": np.uint8, "<u2": np.uint16, "<f8": np.float64}


def _ring_index(start: int, k: int, cap: int):
    """Index of k consecutive ring entries from `start` (a slice when they do not wrap)."""
    return np.arange(start, start + k) % cap if start + k > cap else slice(start, start + k)


class RecordOps:
    """Batch operations on objects of one `@record` type for one domain's heap view."""

    def __init__(self, heap, rtype):
        self.heap = heap
        self.rtype = rtype
        self.did = heap.domain_id
        hf = heap.hf
        # the record table as rows of ten u32 words: one gather per batch, then
        # column compares (much cheaper than field access on a structured copy)
        self.recw = np.ndarray((heap.n_records, REC_SIZE // 4), dtype=np.uint32, buffer=heap.mem,
                               offset=hf.layout.records)
        # the same table as rows of five u64 words: a gathered row's word 2 is the
        # object's offset, and `.view(np.uint32)` gives the u32 fields for free
        self.rec64 = np.ndarray((heap.n_records, REC_SIZE // 8), dtype=np.uint64, buffer=heap.mem,
                                offset=hf.layout.records)
        self._pair_views: dict = {}
        self.mem64 = np.frombuffer(heap.mem, dtype=np.uint64, count=len(heap.mem) // 8)
        self._mat_rows = 0
        self.maps = hf.maps.reshape(-1)
        self.arena = hf.arena_off
        self.n_records = heap.n_records
        self.mem = np.frombuffer(heap.mem, dtype=np.uint8)
        self.tid = rtype.type_id
        self.name = rtype.__name__
        self.size = rtype.size
        self._views: dict = {}
        heap._register(rtype.type_id, rtype.type_name, str(rtype.dtype.descr))

    # -- allocation ---------------------------------------------------------------------
    def alloc(self, n: int) -> np.ndarray:
        """Allocate `n` zeroed objects owned by this domain; returns their offsets."""
        out = np.empty(max(n, 0), dtype=np.int64)
        if n <= 0:
            return out
        heap, size, tid, mem = self.heap, self.size, self.tid, self.heap.mem
        heap.reserve(n, size)
        alloc = heap._alloc_raw
        zero = bytes(size)
        for i in range(n):
            _slot, _gen, off = alloc(size, K_RECORD, tid)
            mem[off:off + size] = zero
            out[i] = off
        return out

    def free(self, offsets) -> None:
        """Free objects this domain owns at top level."""
        offs = np.asarray(offsets, dtype=np.int64)
        if not offs.size:
            return
        slots, _gens = self.owned_slots(offs, "free")
        for s in slots.tolist():
            self.heap._free_raw(s)

    # -- fields --------------------------------------------------------------------------
    def _field_view(self, name: str):
        v = self._views.get(name)
        if v is None:
            ft, foff = self.rtype.dtype.fields[name][:2]
            dt = _FIELD_VIEW.get(ft.str)
            if dt is None:
                raise TypeError(f"{self.name}.{name} is not a scalar field")
            width = np.dtype(dt).itemsize
            if foff % width:
                raise TypeError(f"{self.name}.{name} is not aligned for a vector view")
            arr = np.frombuffer(self.heap.mem, dtype=dt, count=len(self.heap.mem) // width)
            v = self._views[name] = (arr, foff, width.bit_length() - 1)
        return v

    def get(self, offsets: np.ndarray, name: str) -> np.ndarray:
        """Field `name` of the objects at `offsets` (one gather)."""
        arr, foff, sh = self._field_view(name)
        return arr[(offsets + foff) >> sh]

    def set(self, offsets: np.ndarray, name: str, values) -> None:
        """Set field `name` of the objects at `offsets` (one scatter)."""
        arr, foff, sh = self._field_view(name)
        arr[(offsets + foff) >> sh] = values

    # -- deques --------------------------------------------------------------------------
    def deque(self, capacity: int, offsets=None):
        dq = self.heap.alloc_deque(self.rtype, capacity)
        if offsets is not None and len(offsets):
            self.put(dq, offsets)
        return dq

    def _hdr(self, dq):
        dq._check_owned()
        head, n, cap, etid = _HDR.unpack_from(self.heap.mem, dq.offset)
        if etid != self.tid or cap * 8 + DQ_HDR > dq.size or head >= max(cap, 1) or n > cap:
            raise OwnershipError(f"not an RRefDeque[{self.name}], or its header is corrupt")
        return head, n, cap

    def _pairs(self, dq, cap: int) -> np.ndarray:
        key = (dq.offset, cap)
        v = self._pair_views.get(key)
        if v is None:
            if len(self._pair_views) > 256:
                self._pair_views.clear()
            v = self._pair_views[key] = np.ndarray((cap, 2), dtype=np.uint32, buffer=self.heap.mem,
                                                   offset=dq.offset + DQ_HDR)
        return v

    def _elements(self, dq, head: int, k: int, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated (slots, gens, offsets) of the first k elements (live objects of
        this type, of the generation the entry names, inside dq, each once).
        One gather of the records as u64 words, one AND with a full-size mask, one
        compare with an expected matrix (its generation column copied from the
        entries): a handful of numpy calls whatever is checked."""
        base = (dq.offset + DQ_HDR) >> 3
        m64 = self.mem64
        p = m64[base + head:base + head + k] if head + k <= cap else \
            np.concatenate((m64[base + head:base + cap], m64[base:base + head + k - cap]))
        slots = p.view(np.int64) & 0xFFFFFFFF
        try:
            g = self.rec64.take(slots, axis=0)            # a slot beyond the table: IndexError
        except IndexError:
            g = None
        if g is not None:
            exp, mask = self._matrices(k)
            e32 = exp[0].view(np.uint32)
            e32[:, _W_GEN] = p.view(np.uint32)[1::2]      # the entry's generation
            e32[:, _W_PARENT] = dq.slot
            offs = g[:, 2].astype(np.int64)
            g &= mask[0]
            if (count_nonzero(g == exp[0]) == 5 * k and count_nonzero(slots) == k
                    and not (k > 1 and has_duplicates(slots))):
                return slots, (p >> np.uint64(32)).astype(np.int64), offs
        self._refuse_elements(dq, head, k, cap)

    def _matrices(self, k: int):
        """(expected, mask) u64 matrices [for elements inside a deque, for owned
        objects] of at least k rows, constant columns preset; full size because a
        broadcast (k, 5) & (5,) runs an inner loop of 5 and costs 3x."""
        if k > self._mat_rows:
            rows = max(k, 2 * self._mat_rows)
            hi, ones = 0xFFFFFFFF00000000, 0xFFFFFFFFFFFFFFFF  # gen: low half of word 1
            tid_hi = self.tid << 32
            e_in = np.zeros((rows, 5), dtype=np.uint64)
            e_in[:, 0], e_in[:, 1] = R_LIVE, tid_hi       # state; type (gen, parent per batch)
            m_in = np.tile(np.array([0xFF, ones, 0, 0, hi], dtype=np.uint64), (rows, 1))
            e_own = np.zeros((rows, 5), dtype=np.uint64)
            e_own[:, 0], e_own[:, 1] = R_LIVE | (self.did << 32), tid_hi   # state, owner; type
            m_own = np.tile(np.array([hi | 0xFF, hi, ones, 0, ones], dtype=np.uint64), (rows, 1))
            self._exp, self._mask, self._mat_rows = (e_in, e_own), (m_in, m_own), rows
        return (self._exp[0][:k], self._exp[1][:k]), (self._mask[0][:k], self._mask[1][:k])

    def _refuse_elements(self, dq, head: int, k: int, cap: int) -> None:
        """Raise the precise OwnershipError for a batch `_elements` refused."""
        pairs = self._pairs(dq, cap)
        p = pairs[head:head + k] if head + k <= cap else pairs[_ring_index(head, k, cap)]
        slots = p[:, 0].astype(np.int64)
        w = self.rec64.take(slots, axis=0, mode="clip").view(np.uint32)  # beyond the table: refused
        ok = ((slots > 0) & (slots < self.n_records) & (w[:, _W_GEN] == p[:, 1])
              & (w[:, _W_PARENT] == dq.slot) & (w[:, _W_TYPE] == self.tid)
              & ((w[:, _W_STATE] & 0xFF) == R_LIVE))
        if not ok.all():
            raise OwnershipError(f"RRefDeque[{self.name}] holds {int((~ok).sum())} entries "
                                 f"that are not live {self.name}s inside it")
        raise OwnershipError(f"RRefDeque[{self.name}] names the same object twice")

    def length(self, dq) -> int:
        return self._hdr(dq)[1]

    def room(self, dq) -> int:
        head, n, cap = self._hdr(dq)
        return cap - n

    def peek(self, dq) -> np.ndarray:
        """Offsets of the objects in `dq`, front to back; they stay in the deque."""
        return self.peek_records(dq)[2]

    def peek_records(self, dq, skip: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slots, gens, offsets) of the objects in `dq` after the first `skip`."""
        head, n, cap = self._hdr(dq)
        skip = max(0, min(skip, n))
        if n == skip:
            return EMPTY, EMPTY, EMPTY
        return self._elements(dq, (head + skip) % cap, n - skip, cap)

    def peek_pairs(self, dq, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(slots, gens) the entries of `dq` after the first `skip` name, without
        checking the records: for a caller that matches them against its own
        table of what it handed out (the NVMe shadow's completions)."""
        head, n, cap = self._hdr(dq)
        skip = max(0, min(skip, n))
        if n == skip:
            return EMPTY, EMPTY
        pairs = self._pairs(dq, cap)
        h, k = (head + skip) % cap, n - skip
        p = pairs[h:h + k] if h + k <= cap else pairs[_ring_index(h, k, cap)]
        return p[:, 0].astype(np.int64), p[:, 1].astype(np.int64)

    def take(self, dq, max_n: int | None = None) -> np.ndarray:
        """Remove up to `max_n` objects from the front of `dq`; this domain owns them
        (top level) afterwards.  Returns their offsets."""
        return self.take_records(dq, max_n)[2]

    def take_records(self, dq, max_n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`take`, returning (slots, gens, offsets): what `put_records` needs to put
        them back without checking them again."""
        head, n, cap = self._hdr(dq)
        k = n if max_n is None else max(0, min(n, max_n))
        if not k:
            return EMPTY, EMPTY, EMPTY
        slots, gens, offs = self._elements(dq, head, k, cap)
        _HDR.pack_into(self.heap.mem, dq.offset, (head + k) % cap, n - k, cap, self.tid)
        recw = self.recw
        recw[slots, _W_OWNER] = self.did
        recw[slots, _W_PARENT] = 0              # the commit, as in pop_front
        return slots, gens, offs

    def _owned(self, offs: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(None if all are fine else the ok mask, slots, u32 record rows) for objects
        this domain owns at top level, unlent (one masked compare, as in _elements)."""
        k = len(offs)
        slots = self.maps.take((offs - self.arena) >> _UNIT_SHIFT, mode="clip").astype(np.int64)
        g = self.rec64.take(slots, axis=0, mode="clip")
        w = g.view(np.uint32)
        exp, mask = self._matrices(k)
        exp[1][:, 2] = offs
        gm = g & mask[1]
        if count_nonzero(gm == exp[1]) == 5 * k and count_nonzero(slots) == k:
            return None, slots, w
        ok = ((slots > 0) & (w[:, _W_OWNER] == self.did) & (w[:, _W_PARENT] == 0)
              & (w[:, _W_BORROWER] == 0) & (w[:, _W_TYPE] == self.tid)
              & ((w[:, _W_STATE] & 0xFF) == R_LIVE) & (g[:, 2].view(np.int64) == offs))
        return ok, slots, w

    def owned(self, offsets) -> np.ndarray:
        """Which of `offsets` are objects of this type this domain owns at top level."""
        offs = np.asarray(offsets, dtype=np.int64)
        if not offs.size:
            return np.zeros(0, dtype=bool)
        ok = self._owned(offs)[0]
        return np.ones(offs.size, dtype=bool) if ok is None else ok

    def owned_slots(self, offs: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(slots, generations) of objects of this type this domain owns at top
        level, unlent; OwnershipError naming `what` otherwise."""
        ok, slots, w = self._owned(offs)
        if ok is not None:
            raise OwnershipError(f"{what}: {int((~ok).sum())} of {len(offs)} objects are not "
                                 f"{self.name}s this domain owns at top level "
                                 f"(or not the start of a heap object)")
        if len(slots) > 1 and has_duplicates(slots):
            raise OwnershipError(f"{what}: the same object appears twice in one batch")
        return slots, w[:, _W_GEN]

    def put(self, dq, offsets) -> int:
        """Append objects (owned by this domain, top level) to `dq`, as many as fit.
        Returns how many were appended (a prefix of `offsets`)."""
        head, n, cap = self._hdr(dq)
        offs = np.asarray(offsets, dtype=np.int64)
        k = min(cap - n, offs.size)
        if k <= 0:
            return 0
        slots, gens = self.owned_slots(offs[:k], "put")
        return self._append(dq, head, n, cap, slots, gens)

    def records_of(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slots, gens) of objects at `offsets` that this domain owns and has
        tracked itself (no checks: for `put_records`)."""
        slots = self.maps.take((offsets - self.arena) >> _UNIT_SHIFT, mode="clip").astype(np.int64)
        return slots, self.recw[slots, _W_GEN]

    def put_records(self, dq, slots: np.ndarray, gens: np.ndarray) -> int:
        """`put` for objects this domain took (`take_records`) or allocated and has
        tracked since, named by (slot, generation).  A prefix of them, as many as fit.
        They are checked as `put` checks offsets (one gather, one compare): appending
        writes each record's parent field, and a slot that is not this domain's own
        would let it write another domain's record (and a receiver, which cannot tell
        who put an entry there, would take that object from its owner: found by the
        deque fuzzer)."""
        head, n, cap = self._hdr(dq)
        k = min(cap - n, len(slots))
        if k <= 0:
            return 0
        slots = np.asarray(slots[:k], dtype=np.int64)
        gens = np.asarray(gens[:k], dtype=np.int64)
        self._check_own_slots(slots, gens, "put_records")
        return self._append(dq, head, n, cap, slots, gens)

    def _check_own_slots(self, slots: np.ndarray, gens: np.ndarray, what: str) -> None:
        """OwnershipError unless every (slot, gen) is a live object of this type that
        this domain owns at top level, unlent, each named once."""
        if count_nonzero((slots <= 0) | (slots >= self.n_records)):
            raise OwnershipError(f"{what}: a slot outside the ownership table (1..{self.n_records - 1})")
        w = self.recw.take(slots, axis=0)
        ok = ((w[:, _W_OWNER] == self.did) & (w[:, _W_PARENT] == 0) & (w[:, _W_BORROWER] == 0)
              & (w[:, _W_TYPE] == self.tid) & ((w[:, _W_STATE] & 0xFF) == R_LIVE)
              & (w[:, _W_GEN] == (gens & 0xFFFFFFFF)))
        if not ok.all():
            raise OwnershipError(f"{what}: {int((~ok).sum())} of {len(slots)} objects are not live "
                                 f"{self.name}s of this generation that this domain owns at top level")
        if len(slots) > 1 and has_duplicates(slots):
            raise OwnershipError(f"{what}: the same object appears twice in one batch")

    def _append(self, dq, head: int, n: int, cap: int, slots: np.ndarray, gens: np.ndarray) -> int:
        k = len(slots)
        start = (head + n) % cap
        pairs = self._pairs(dq, cap)
        rows = np.column_stack((slots, gens))
        if start + k <= cap:
            pairs[start:start + k] = rows
        else:
            pairs[_ring_index(start, k, cap)] = rows
        self.recw[slots, _W_PARENT] = dq.slot    # the commit, as in push_back
        _HDR.pack_into(self.heap.mem, dq.offset, head, n + k, cap, self.tid)
        return k

    def transfer(self, src, dst, max_n: int | None = None) -> int:
        """Move objects from the front of `src` to the back of `dst` (both owned here)."""
        k = self.room(dst)
        if max_n is not None:
            k = min(k, max_n)
        offs = self.take(src, k)
        return self.put(dst, offs)
