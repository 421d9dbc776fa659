"""The supervisor side of the heap: leases, reclamation, the checker, statistics.

Single-writer rule: the manager writes a chunk's state/lessee only when the chunk is
free or its lessee is dead, and a record only when it is in the global pool or its
owner is dead.  Domains write their own records and the maps of slots they allocate
or free.  So nothing here needs a lock shared with domains.

Crash consistency (a domain killed at any instruction):
- alloc writes the record's fields (type, offset, size, borrower=0, parent=0, kind; the
  owner field already names the allocator, who leased or freed the slot, and gen is
  kept), then state LIVE, then the map entry.  Killed before LIVE: the record is a
  FREE record cached by the dead domain -> back to the pool; its map entry was never
  set.
  Killed after LIVE: a live object of the dead domain -> freed; the map entry is cleared
  only if it names that record (0 if the kill came before the map write).
- free writes the journal (op, slot, map index) in the domain's entry, then state FREE,
  then gen+1, then map entry 0.  Killed before FREE: still a live object of the dead
  domain -> freed by reclaim.  Killed after FREE but before the map write: reclaim redoes
  the journaled clear iff the map entry still names that slot and the record is FREE.
  That is race-free: the slot belongs to the dead domain's cache, so no live domain can
  write that slot number anywhere; the lessee of the chunk writes a map entry only when
  it is 0.  The journal is idempotent and is not cleared on the hot path (a stale entry
  fails the "map names the slot and the record is FREE" test).  gen+1 after FREE is safe:
  a FREE record fails every handle validation whatever its generation.
- move writes one aligned owner field with one store: either the old or the new owner
  holds it (see "single stores" below).  A move to a domain that dies (and is
  reclaimed) before the move lands leaves an object owned by a dead id: sweep_orphans()
  (run by every reclaim) frees it.
- borrow writes the borrower field; reclaim of a lender defers (DEFERRED) objects whose
  borrower is still in the call; release_deferred() frees them after.
- containers: push writes the (slot, gen) entry, then the element's parent (the commit),
  then the length; pop reads the entry, sets owner then parent=0 (the commit).  All of
  a container's records have a single writer (the container's owner), so a kill in the
  middle leaves a tree entirely owned by the dead domain, which reclaim frees as a whole
  (top-level records owned by it, then, iteratively, every LIVE record whose parent was
  freed).
- chunks: the manager writes a chunk's lease only while it is FREE; the lessee writes
  only its size class.  Reclaim frees a dead lessee's chunk if no map entry is set, else
  marks it ORPHAN (lessee 0); live owners keep freeing objects in it, and
  sweep_orphans() frees it once its map is empty.  Map entries in a dead lessee's chunk
  only go from non-zero to zero, so the "empty" decision cannot be invalidated.
- torn reads: the manager's vectorised scans run while live domains keep writing
  their own records, so a scan must never combine fields read at different moments
  into a fact that never held.  (It did: "state FREE" read from a mover's cached slot,
  then "owner = dead id" read after the mover had allocated that slot again and moved
  the object to the dead domain; the manager then reset the owner of a LIVE object to
  0, and nobody ever freed it.)  So state and owner, the pair every decision rests on,
  are read together with one aligned 8-byte load per record (`_state_owner`).  Parent
  and borrower are read *before* that pair: a record that is LIVE and owned by a dead
  domain at the later read is frozen from then on, and it cannot have become a
  container element or a loan in between (only a live owner pushes or lends, and it
  keeps its own id in the owner field when it does).
- single stores: every argument above assumes a field goes from its old value to its
  new one in one step, as seen by a concurrent reader and as left by a SIGKILL.  So
  domains write shared fields (owner, gen, kind, borrower, parent, map entries, the
  journal) with one aligned store each, through typed memoryviews (`Heap._u32`), never
  with `struct.pack_into`: CPython's struct zeroes the whole destination first and
  then writes it byte by byte.  (It did: a mover's owner field read 0 for a moment, and
  a kill landing there left a LIVE record owned by 0, which nobody frees.  _alloc_raw
  rewrote a cached slot's whole tail, so the slot read "FREE, owner 0, gen 0" for a
  moment: a kill there lost its generation, and the pool rescan with its verification
  could lease it to a second domain while the first was allocating it.)  The one
  multi-field pack left, in _alloc_raw, writes bytes 12..39
  (type, offset, size, borrower, parent) of a slot that is FREE in the writer's own
  cache: no decision reads those fields of a FREE record, and borrower and parent are
  already 0 there.  The manager writes through numpy, one typed store per element.
- the domain table in the heap (each id's ALIVE/DEAD byte) is for readers such as
  `redleaf heap`; any domain can write it, so the manager of record never decides from
  it: which ids are alive and which are dead (whose objects sweep_orphans frees, who
  may lease) is kept in the manager's own memory (`_alive`, `_dead`), set only by
  register_domain and reclaim, i.e. by the supervisor's table (DESIGN §5a).
- the manager's own pool list is only a hint: every slot is re-verified FREE and
  unowned in the table (one word read) before it is leased, so a manager crash or a
  bookkeeping slip cannot hand one slot to two domains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .arena import HeapFile
from .errors import HeapExhausted
from .layout import (C_FREE, C_LARGE, C_LARGE_TAIL, C_LEASED, C_ORPHAN, CHUNK, D_ALIVE, D_DEAD, DOMAIN_ENTRY,
                     F_OWNER, F_STATE, J_FREE, JOURNAL, JOURNAL_OFF, K_ARRAY, K_DEQUE, R_DEFERRED, R_FREE,
                     R_LIVE, REC_SIZE, UNIT, UNITS)

assert F_STATE == 0 and F_OWNER == 4 and REC_SIZE % 8 == 0  # state+owner share record word 0


@dataclass
class ReclaimReport:
    domain: int
    objects: int = 0
    bytes: int = 0
    records_returned: int = 0
    chunks_freed: int = 0
    chunks_orphaned: int = 0
    deferred: list = field(default_factory=list)  # (slot, borrower)

    def __str__(self):
        d = f", {len(self.deferred)} deferred (lent out)" if self.deferred else ""
        return (f"{self.objects} objects / {self.bytes} B freed, {self.records_returned} cached records returned, "
                f"{self.chunks_freed} chunks freed, {self.chunks_orphaned} orphaned{d}")


class HeapManager:
    def __init__(self, hf: HeapFile):
        self.hf = hf
        self.mem = hf.mem
        self.registry: dict[int, dict] = hf.read_registry()
        rec = hf.records
        # word 0 of every record (state, flags, kind, owner), 8-byte aligned: see _state_owner
        self._word0 = np.ndarray(hf.layout.n_records, "<u8", buffer=hf.mem, offset=hf.layout.records,
                                 strides=(REC_SIZE,))
        assert self._word0.flags.aligned
        self.free_records = list(np.flatnonzero((rec["state"] == R_FREE) & (rec["owner"] == 0))[::-1])
        self.free_records = [int(s) for s in self.free_records if s != 0]
        # the manager of record's own view of the domains (module docstring): never the heap's bytes
        self._alive: set[int] = set()
        self._dead: set[int] = set()
        self._of_record = False

    @classmethod
    def create(cls, path: str, size: int, records: int = 1 << 18, max_domains: int = 256) -> "HeapManager":
        m = cls(HeapFile.create(path, size, records, max_domains))
        m._of_record = True
        return m

    @classmethod
    def open(cls, path: str, readonly: bool = False) -> "HeapManager":
        """Open an existing heap, e.g. for `redleaf heap --check` from another process.
        check() and stats() only read; only the manager of record may lease or reclaim."""
        return cls(HeapFile.open(path, readonly=readonly))

    def runtime_area(self, domain_id: int) -> memoryview:
        return self.hf.runtime_area(domain_id)

    def dma_window(self):
        return self.hf.dma_window()

    def close(self) -> None:
        self._word0 = None  # a view of the mapping: it must go for the unmap to happen
        self.hf.close()

    # -- domains ------------------------------------------------------------------
    def register_domain(self, did: int) -> None:
        if not 0 < did < self.hf.layout.max_domains:
            raise ValueError(f"domain id {did} out of range 1..{self.hf.layout.max_domains - 1}")
        off = self.hf.layout.domains + did * DOMAIN_ENTRY
        self.mem[off:off + DOMAIN_ENTRY] = bytes(DOMAIN_ENTRY)
        self.hf.domains["state"][did] = D_ALIVE
        self._alive.add(did)
        self._dead.discard(did)

    def register_type(self, type_id: int, name: str, descr: str) -> None:
        """Record a type in the header registry (manager only; informational for tools)."""
        if self.registry.get(type_id, {}).get("name") == name:
            return
        self.registry[type_id] = {"name": str(name)[:200], "descr": str(descr)[:2000]}
        if not self.hf.write_registry(self.registry):
            del self.registry[type_id]   # the registry is informational; ids stay valid

    # -- leases -------------------------------------------------------------------
    def lease(self, did: int, kind: str, count: int) -> list[int]:
        if did not in self._alive:
            raise ValueError(f"domain {did} is not registered")
        if kind == "records":
            slots = self._take_pool(count)
            if not slots:
                raise HeapExhausted(f"all {self.hf.layout.n_records} ownership records are in use; "
                                    f"raise `records` in the manifest's [heap] section")
            self.hf.records["owner"][slots] = did
            return slots
        ch = self.hf.chunks
        if kind == "chunks":
            free = np.flatnonzero(ch["state"] == C_FREE)[:count]
            if len(free) == 0:
                raise HeapExhausted(self._exhausted_msg(CHUNK))
            ch["klass"][free] = 0
            ch["run"][free] = 1
            ch["lessee"][free] = did
            ch["state"][free] = C_LEASED
            return [int(c) for c in free]
        if kind.startswith("run:"):
            n = int(kind[4:])
            if n <= 0:
                raise ValueError("run length must be positive")
            start = self._find_run(n)
            if start < 0:
                raise HeapExhausted(self._exhausted_msg(n * CHUNK))
            ch["lessee"][start:start + n] = did
            ch["run"][start] = n
            ch["state"][start + 1:start + n] = C_LARGE_TAIL
            ch["state"][start] = C_LARGE
            return [start]
        raise ValueError(f"unknown lease kind {kind!r}")

    def _take_pool(self, count: int) -> list[int]:
        """Up to `count` slots of the global pool. The Python list is only a hint: every
        slot is verified FREE and unowned in the table before it is handed out."""
        out: list[int] = []
        seen: set[int] = set()
        rescanned = False
        while len(out) < count:
            if not self.free_records:
                if rescanned:
                    break
                rescanned = True
                state, owner = self._state_owner()   # one read per record ("torn reads")
                pool = np.flatnonzero((state == R_FREE) & (owner == 0))
                self.free_records = [int(x) for x in pool[::-1] if x != 0 and int(x) not in seen]
                continue
            s = self.free_records.pop()
            if s in seen or s == 0:
                continue
            seen.add(s)
            w = int(self._word0[s])
            if w & 0xFF == R_FREE and w >> 32 == 0:
                out.append(s)
        return out

    def _state_owner(self) -> tuple[np.ndarray, np.ndarray]:
        """(state, owner) of every record, each pair from one atomic read.

        Why: comparing `records["state"]` and then `records["owner"]` reads the two
        fields of a record microseconds apart, and a live domain may write in between
        (module docstring, "torn reads").  Both live in the record's first aligned 8-byte
        word, which numpy copies with one 64-bit load per element, and an aligned load is
        atomic on x86-64, the only platform we run on (domains/channel.py says why)."""
        w = self._word0.copy()
        return (w & 0xFF).astype(np.uint8), (w >> 32).astype(np.uint32)

    def _exhausted_msg(self, want: int) -> str:
        free = int((self.hf.chunks["state"] == C_FREE).sum()) * CHUNK
        return (f"the exchange heap cannot supply {want} bytes ({free >> 10} KiB free in chunks of 64 KiB); "
                f"raise `size` in the manifest's [heap] section or free objects")

    def _find_run(self, n: int) -> int:
        free = (self.hf.chunks["state"] == C_FREE).astype(np.int32)
        if n == 1:
            idx = np.flatnonzero(free)
            return int(idx[0]) if len(idx) else -1
        c = np.concatenate(([0], np.cumsum(free)))
        ok = np.flatnonzero(c[n:] - c[:-n] == n)
        return int(ok[0]) if len(ok) else -1

    # -- reclamation ----------------------------------------------------------------
    def reclaim(self, did: int, borrow_active=lambda borrower, slot: False) -> ReclaimReport:
        hf = self.hf
        rep = ReclaimReport(did)
        rec = hf.records
        if not 0 < did < hf.layout.max_domains:
            raise ValueError(f"domain id {did} out of range 1..{hf.layout.max_domains - 1}")
        hf.domains["state"][did] = D_DEAD   # first: from now on the manager is its records' writer
        self._alive.discard(did)
        self._dead.add(did)
        self._redo_journal(did)
        parent = rec["parent"].copy()   # before state+owner: see "torn reads" above
        state, owner = self._state_owner()
        top = np.flatnonzero((state == R_LIVE) & (owner == did) & (parent == 0))
        # objects lent to a live borrower wait until the borrow ends
        lent = top[rec["borrower"][top] != 0]
        keep = []
        for s in lent:
            b = int(rec["borrower"][s])
            if b != did and borrow_active(b, int(s)):
                keep.append(int(s))
                rep.deferred.append((int(s), b))
        if keep:
            rec["state"][keep] = R_DEFERRED
            top = np.setdiff1d(top, keep)
        freed = self._free_tree(top)
        rep.objects = len(freed)
        rep.bytes = int(rec["size"][freed].sum()) if len(freed) else 0
        # cached free records go back to the pool.  FREE and owned by the dead domain at
        # one instant means "in its cache": no live domain writes such a record.
        state, owner = self._state_owner()
        mine = np.flatnonzero((state == R_FREE) & (owner == did))
        rec["owner"][mine] = 0
        self.free_records.extend(int(s) for s in mine if s != 0)
        self.free_records.extend(int(s) for s in freed)
        rep.records_returned = len(mine)
        # its chunks: free if nothing lives there, else orphaned until the last object goes
        ch = hf.chunks
        leased = np.flatnonzero((ch["lessee"] == did) & (ch["state"] != C_FREE))
        for c in leased:
            st = ch["state"][c]
            if st == C_LARGE_TAIL:
                continue
            if st == C_LARGE:
                n = int(ch["run"][c])
                if hf.maps[c, 0] == 0:
                    self._free_chunks(c, n)
                    rep.chunks_freed += n
                else:
                    ch["lessee"][c:c + n] = 0
                    rep.chunks_orphaned += n
            elif not hf.maps[c].any():
                self._free_chunks(c, 1)
                rep.chunks_freed += 1
            else:
                ch["state"][c] = C_ORPHAN
                ch["lessee"][c] = 0
                rep.chunks_orphaned += 1
        self.sweep_orphans()
        return rep

    def _redo_journal(self, did: int) -> None:
        off = self.hf.layout.domains + did * DOMAIN_ENTRY + JOURNAL_OFF
        op, slot, mapidx = JOURNAL.unpack_from(self.mem, off)
        if op == J_FREE and 0 < slot < self.hf.layout.n_records and mapidx < self.hf.maps.size:
            flat = self.hf.maps.reshape(-1)
            rec = self.hf.records
            w = int(self._word0[slot])   # state and owner at one instant ("torn reads")
            # FREE and still owned by the dead domain: the slot is in its cache, so no
            # live domain writes it; the journal may be stale (it is not cleared on the
            # hot path) and the slot recycled elsewhere, and then it is not ours to touch
            if w & 0xFF == R_FREE and w >> 32 == did and flat[mapidx] == slot:
                # killed inside _free_raw after "state FREE": the generation may not
                # have been bumped yet, and a slot recycled with its old generation
                # would make stale handles to the freed object valid again.  A second
                # bump (if the first landed) is harmless: generations only must change.
                rec["gen"][slot] += 1
                flat[mapidx] = 0
        JOURNAL.pack_into(self.mem, off, 0, 0, 0)

    def _free_tree(self, top: np.ndarray) -> np.ndarray:
        """Free records `top` and, iteratively, every element they contain."""
        rec = self.hf.records
        out = []
        frontier = np.asarray(top, dtype=np.int64)
        while len(frontier):
            out.append(frontier)
            containers = frontier[np.isin(rec["kind"][frontier], (K_ARRAY, K_DEQUE))]
            self._free_records(frontier)
            if len(containers) == 0:
                break
            frontier = np.flatnonzero((rec["state"] == R_LIVE) & np.isin(rec["parent"], containers))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _free_records(self, slots: np.ndarray) -> None:
        if len(slots) == 0:
            return
        hf = self.hf
        rec = hf.records
        offs = rec["offset"][slots].astype(np.int64) - hf.arena_off
        ok = (offs >= 0) & (offs < hf.arena_end - hf.arena_off)
        units = offs[ok] // UNIT
        flat = hf.maps.reshape(-1)
        good_slots = slots[ok]
        mine = flat[units] == good_slots
        flat[units[mine]] = 0
        rec["state"][slots] = R_FREE
        rec["gen"][slots] += 1
        rec["owner"][slots] = 0
        rec["borrower"][slots] = 0
        rec["parent"][slots] = 0

    def _free_chunks(self, c: int, n: int) -> None:
        ch = self.hf.chunks
        ch["lessee"][c:c + n] = 0
        ch["run"][c:c + n] = 0
        ch["klass"][c:c + n] = 0
        ch["state"][c:c + n] = C_FREE

    def release_deferred(self, slot: int) -> None:
        rec = self.hf.records
        if rec["state"][slot] == R_DEFERRED:
            rec["state"][slot] = R_LIVE
            freed = self._free_tree(np.array([slot]))
            self.free_records.extend(int(s) for s in freed)
            self.sweep_orphans()

    def sweep_orphans(self) -> int:
        """Free what no live domain can free any more; returns the chunks released.

        Besides orphaned chunks whose last object went, this catches objects moved to a
        domain that died (and was reclaimed) before the move landed, and free records still
        cached by dead domains: the mover wrote ``owner = dead id`` after the reclaim ran.
        """
        hf = self.hf
        ch = hf.chunks
        rec = hf.records
        n = 0
        dead = np.fromiter(sorted(self._dead - self._alive), dtype=np.int64)  # never the heap's bytes
        if len(dead):
            parent, borrower = rec["parent"].copy(), rec["borrower"].copy()  # first: "torn reads"
            state, owner = self._state_owner()
            downed = np.isin(owner, dead)
            stray = np.flatnonzero(downed & (state == R_LIVE) & (parent == 0) & (borrower == 0))
            if len(stray):
                self.free_records.extend(int(s) for s in self._free_tree(stray))
            cached = np.flatnonzero(downed & (state == R_FREE))
            cached = cached[cached != 0]
            if len(cached):
                rec["owner"][cached] = 0
                self.free_records.extend(int(s) for s in cached)
        for c in np.flatnonzero(ch["state"] == C_ORPHAN):
            if not hf.maps[c].any():
                self._free_chunks(c, 1)
                n += 1
        for c in np.flatnonzero((ch["state"] == C_LARGE) & (ch["lessee"] == 0)):
            if hf.maps[c, 0] == 0:
                k = int(ch["run"][c])
                self._free_chunks(c, k)
                n += k
        return n

    # -- checker and stats --------------------------------------------------------------
    def check(self, dead=()) -> list[str]:
        """Every invariant of DESIGN §4; returns the violations (empty when sound)."""
        from .layout import D_DEAD as _DD

        hf = self.hf
        rec, ch = hf.records, hf.chunks
        v: list[str] = []
        if self._of_record:  # the supervisor's own view, not bytes a domain can write
            dead = set(int(d) for d in dead) | self._dead
        else:  # a reader such as `redleaf heap` has only the heap's table
            dead = set(int(d) for d in dead) | set(int(d) for d in np.flatnonzero(hf.domains["state"] == _DD))
        live = np.flatnonzero(rec["state"] != R_FREE)
        if rec["state"][0] != R_FREE:
            v.append("record 0 (the null slot) is in use")
        offs = rec["offset"][live].astype(np.int64)
        sizes = rec["size"][live].astype(np.int64)
        outside = (offs < hf.arena_off) | (offs + sizes > hf.arena_end)
        for s in live[outside][:5]:
            v.append(f"record {s} lies outside the arena (offset {int(rec['offset'][s]):#x}, size {int(rec['size'][s])})")
        # slot extents: class size for small objects, whole runs for large
        order = np.argsort(offs)
        so, ss = offs[order], sizes[order]
        ext = np.where(ss > (1 << 15), (ss + CHUNK - 1) // CHUNK * CHUNK,
                       np.maximum(UNIT, 1 << np.ceil(np.log2(np.maximum(ss, 1))).astype(np.int64)))
        overlap = np.flatnonzero(so[:-1] + ext[:-1] > so[1:]) if len(so) > 1 else []
        for i in overlap[:5]:
            a, b = live[order][i], live[order][i + 1]
            v.append(f"records {a} and {b} overlap at offset {int(so[i + 1]):#x}")
        # chunk consistency
        cidx = (offs - hf.arena_off) // CHUNK
        inside = ~outside
        bad_chunk = inside & ~np.isin(ch["state"][np.clip(cidx, 0, len(ch) - 1)], (C_LEASED, C_ORPHAN, C_LARGE))
        for s in live[bad_chunk][:5]:
            v.append(f"record {s} lies in a chunk that is not leased")
        # dead owners
        if dead:
            dl = np.isin(rec["owner"], list(dead))
            bad = np.flatnonzero(dl & (rec["state"] == R_LIVE) & (rec["parent"] == 0))
            for s in bad[:5]:
                v.append(f"record {s} is live and owned by dead domain {int(rec['owner'][s])}")
            cached = np.flatnonzero(dl & (rec["state"] == R_FREE))
            if len(cached):
                v.append(f"{len(cached)} free records are still cached by dead domains")
            dc = np.flatnonzero(np.isin(ch["lessee"], list(dead)) & (ch["state"] != C_FREE))
            if len(dc):
                v.append(f"{len(dc)} chunks are still leased to dead domains")
        # parents
        kids = np.flatnonzero((rec["state"] == R_LIVE) & (rec["parent"] != 0))
        if len(kids):
            par = rec["parent"][kids]
            okp = (rec["state"][par] != R_FREE) & np.isin(rec["kind"][par], (K_ARRAY, K_DEQUE))
            for s in kids[~okp][:5]:
                v.append(f"record {s} has parent {int(rec['parent'][s])}, which is not a live container")
        # byte accounting: every chunk is free, leased (live + cached free) or orphaned
        st = ch["state"]
        counted = int(np.isin(st, (C_FREE, C_LEASED, C_ORPHAN, C_LARGE, C_LARGE_TAIL)).sum())
        if counted != len(ch):
            v.append(f"{len(ch) - counted} chunks have an unknown state")
        per_chunk = np.bincount(cidx[inside & (sizes <= (1 << 15))],
                                weights=ext[np.argsort(order)][inside & (sizes <= (1 << 15))],
                                minlength=len(ch)) if len(live) else np.zeros(len(ch))
        over = np.flatnonzero(per_chunk > CHUNK)
        for c in over[:5]:
            v.append(f"chunk {c} holds {int(per_chunk[c])} bytes of live objects, more than its {CHUNK}")
        # occupancy maps: every live object is found at its unit, every entry names a live object
        flat = hf.maps.reshape(-1)
        lv = live[inside]
        units = (offs[inside] - hf.arena_off) // UNIT
        bad = lv[flat[units] != lv]
        for s in bad[:5]:
            v.append(f"record {s} is live but the occupancy map does not point at it")
        used = np.flatnonzero(flat)
        if len(used):
            who = flat[used].astype(np.int64)
            inrange = who < len(rec)
            ok = np.zeros(len(used), dtype=bool)
            w = who[inrange]
            ok[inrange] = (rec["state"][w] != R_FREE) & (
                (rec["offset"][w].astype(np.int64) - hf.arena_off) // UNIT == used[inrange])
            for u in used[~ok][:5]:
                v.append(f"occupancy map unit {int(u)} names record {int(flat[u])}, which is not a live "
                         f"object there (a leaked slot: run reclaim for its dead freer)")
            if (~ok).sum() > 5:
                v.append(f"... {int((~ok).sum()) - 5} more leaked map entries")
            fc = np.flatnonzero(ch["state"][used // UNITS] == C_FREE)
            if len(fc):
                v.append(f"{len(fc)} occupancy entries lie in free chunks")
        # owners must be registered, alive domains (DEFERRED objects wait for a borrow to end)
        if self._of_record:
            alive = set(self._alive) - dead - {0}
        else:
            alive = set(int(d) for d in np.flatnonzero(hf.domains["state"] == D_ALIVE)) - dead - {0}
        top_live = np.flatnonzero((rec["state"] == R_LIVE) & (rec["parent"] == 0))
        pooled = top_live[rec["owner"][top_live] == 0]
        for s in pooled[:5]:
            v.append(f"record {s} is live but owned by id 0 (the record pool): no domain will ever free it")
        orphan_owner = top_live[~np.isin(rec["owner"][top_live], list(alive | {0}))]
        orphan_owner = orphan_owner[~np.isin(rec["owner"][orphan_owner], list(dead))]
        for s in orphan_owner[:5]:
            v.append(f"record {s} is owned by domain {int(rec['owner'][s])}, which is not registered")
        gens = rec["gen"]
        if int(gens.max(initial=0)) == 0xFFFFFFFF:
            v.append("a record generation reached its maximum")
        return v

    def stats(self) -> dict:
        hf = self.hf
        rec, ch = hf.records, hf.chunks
        live = rec["state"] != R_FREE
        top = live & (rec["parent"] == 0)
        domains: dict = {}
        for d in np.unique(rec["owner"][top]):
            m = top & (rec["owner"] == d)
            domains[str(int(d))] = {"objects": int(m.sum()), "bytes": int(rec["size"][m].sum()), "leased_bytes": 0}
        for d in np.unique(ch["lessee"][ch["state"] != C_FREE]):
            if d == 0:
                continue
            n = int(((ch["lessee"] == d) & (ch["state"] != C_FREE)).sum())
            domains.setdefault(str(int(d)), {"objects": 0, "bytes": 0, "leased_bytes": 0})["leased_bytes"] = n * CHUNK
        types: dict = {}
        for t in np.unique(rec["type_id"][live]):
            m = live & (rec["type_id"] == t)
            name = self.registry.get(int(t), {}).get("name") or f"{int(t):#010x}"
            types[name] = {"objects": int(m.sum()), "bytes": int(rec["size"][m].sum())}
        free_chunks = int((ch["state"] == C_FREE).sum())
        arena = len(ch) * CHUNK
        live_bytes = int(rec["size"][live].sum())
        leased = int((ch["state"] != C_FREE).sum()) * CHUNK
        # fragmentation: 1 - (largest free run / all free chunks)
        free = (ch["state"] == C_FREE).astype(np.int8)
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate(([0], free, [0])))))[::2] if free.any() else [0]
        largest = int(max(runs)) if len(runs) else 0
        return {"arena_bytes": arena, "live_bytes": live_bytes, "free_bytes": free_chunks * CHUNK,
                "cached_free_bytes": max(0, leased - live_bytes), "objects": int(live.sum()),
                "records": hf.layout.n_records, "free_records": len(self.free_records),
                "fragmentation": 0.0 if not free_chunks else round(1 - largest / free_chunks, 4),
                "domains": domains, "types": types}
