"""Every write of a shared record field must be one aligned store.

`struct.pack_into` is not one: CPython's struct zeroes the whole destination first and
then writes each field byte by byte.  So while a domain wrote a record's owner with it
(move_to, set_field, or the record tail in _alloc_raw), the owner field read 0 for a
moment.  Two things followed:

- a domain SIGKILLed inside that moment (the long storm kills preempted workers, which
  stand anywhere) left the record owned by 0 for good: LIVE and owned by "the record
  pool", which nobody ever frees: the storm's "record S is live but owned by id 0";
- the manager, reading in that moment, saw a FREE record cached by a live domain as
  "FREE and owned by 0", i.e. in the pool, and leased it to a second domain.

The first test stops a live domain at arbitrary instructions thousands of times (what a
kill -9 does once); the second races the pool's rescan against a domain's allocations.
Both fail within about a second with the old writes.
"""

import multiprocessing as mp
import os
import signal
import time

import numpy as np

from redleaf.shared_heap import Heap, HeapExhausted, HeapManager

from .conftest import heap_path

A, B, OTHER = 2, 3, 4
CYCLES = 4000          # stop/inspect/continue cycles of the first test


def _pre_leased(m, did, n_records, n_chunks):
    """Leases taken by the test for a domain that runs in a forked child."""
    return m.lease(did, "records", n_records), m.lease(did, "chunks", n_chunks)


def _lease_from(slots, chunks):
    def lease(kind, count):
        pool = slots if kind == "records" else chunks
        if len(pool) < count:
            raise HeapExhausted(f"the test pre-leased too few {kind}")
        out = pool[-count:]
        del pool[-count:]
        return out
    return lease


def _ping_pong(path, leases, seconds):
    """Child: two domains in one process pass objects back and forth (alloc, move, adopt,
    move back, adopt, free) until killed: all the record writes of the hot paths."""
    try:
        ha = Heap.open(path, A, _lease_from(*leases[A]))
        hb = Heap.open(path, B, _lease_from(*leases[B]))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(200):
                v = ha.alloc_vec(np.uint8, 16)
                w = hb.adopt(*v.move_to(B))
                ha.adopt(*w.move_to(A)).drop()
                hb.alloc_vec(np.uint8, 100).drop()
        os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(3)


def _bad_words(m, lo, hi, owners):
    """Slots in [lo, hi) whose owner is not one of `owners`, from one 8-byte read each."""
    w = m._word0[lo:hi].copy()
    owner = w >> 32
    bad = np.flatnonzero(~np.isin(owner, owners))
    return [(lo + int(i), int(w[i] & 0xFF), int(owner[i])) for i in bad]


def test_a_domain_killed_at_any_instruction_never_leaves_a_record_owned_by_the_pool():
    """Stop a live domain at arbitrary points (SIGSTOP); at each stop, every record it
    holds must name a domain as owner, because a SIGKILL at that point would freeze the
    record so.  If one reads owner 0, kill it there and show what reclaim is left with."""
    path = heap_path()
    m = HeapManager.create(path, 4 << 20, records=1024, max_domains=8)
    pid = None
    try:
        leases = {}
        for d in (A, B):
            m.register_domain(d)
            leases[d] = _pre_leased(m, d, 400, 2)
        lo = min(min(leases[A][0]), min(leases[B][0]))
        hi = max(max(leases[A][0]), max(leases[B][0])) + 1
        pid = os.fork()
        if pid == 0:
            _ping_pong(path, leases, 60.0)
        bad = []
        for _ in range(CYCLES):
            os.kill(pid, signal.SIGSTOP)
            _, status = os.waitpid(pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), f"the child died: status {status:#x}"
            bad = _bad_words(m, lo, hi, (A, B))
            if bad:
                break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.0002)   # let it run a little: the next stop lands somewhere else
        # kill it where it stands (stopped: a SIGKILL still ends it) and reclaim both
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pid = None
        m.reclaim(A)
        m.reclaim(B)
        # state 1 (LIVE) and owner 0: a kill there leaves an object nobody frees (the
        # storm's "live but owned by id 0"); state 0 (FREE) and owner 0: a slot of the
        # domain's cache reads as the pool's, and a lease at that moment hands it out twice
        assert bad == [], (f"the domain was stopped while a record it holds read owner 0: "
                           f"(slot, state, owner) {bad[:4]}; after its kill and reclaim: {m.check()}")
        assert m.check() == []
        assert m.stats()["objects"] == 0
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        m.close()
        os.unlink(path)


def _alloc_free_loop(path, slots, chunks, go, n):
    try:
        heap = Heap.open(path, A, _lease_from([], chunks))
        heap.free_slots = list(slots)             # its whole cache: one slot
        while not go.value:
            pass
        for _ in range(n):
            heap.alloc_vec(np.uint8, 16).drop()   # LIFO cache: the same slot every time
        os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(3)


def test_the_pool_never_leases_a_slot_cached_by_a_live_domain():
    """The manager's pool rescan and its one-word verification run while a domain keeps
    allocating and freeing its one cached slot.  The pool is otherwise empty, so every
    lease must fail; a slot handed out is one that the domain also holds."""
    ctx = mp.get_context("fork")
    path = heap_path()
    m = HeapManager.create(path, 1 << 20, records=64, max_domains=8)
    p = None
    try:
        for d in (A, B, OTHER):
            m.register_domain(d)
        slots, chunks = _pre_leased(m, A, 1, 1)
        m.lease(OTHER, "records", 64)            # the rest of the pool: now empty
        go = ctx.RawValue("i", 0)
        p = ctx.Process(target=_alloc_free_loop, args=(path, slots, chunks, go, 300_000), daemon=True)
        p.start()
        go.value = 1
        handed_out = []
        attempts = 0
        while p.is_alive() and not handed_out:
            try:
                handed_out = m.lease(B, "records", 1)
            except HeapExhausted:
                pass
            attempts += 1
        p.join(30)
        assert handed_out == [], (f"after {attempts} leases the pool handed out slot(s) {handed_out}, "
                                  f"which domain {A} holds in its cache (slot {slots[0] if slots else '?'})")
        assert p.exitcode == 0
    finally:
        if p is not None and p.is_alive():
            p.kill()
            p.join(5)
        m.close()
        os.unlink(path)
