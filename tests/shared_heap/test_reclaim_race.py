"""Reclaim racing a live domain that keeps moving fresh objects to the dead domain.

The long storm found this one only under heavy CPU load: reclaim's vectorised scans read
a record's state and its owner in two passes, a few milliseconds apart on a large table.
A live domain that, in between, allocated one of its cached (FREE) slots and moved the
object to the dead domain made the pair read as "FREE and cached by the dead domain";
the manager then set the owner of a LIVE object to 0, and nothing ever freed it.

Here the table is large (so each pass is long) and the mover does nothing else, so the
window is hit many times in one run; a correct manager ends with an empty, sound heap.
"""

import multiprocessing as mp
import os
import signal

import numpy as np

from redleaf.shared_heap import Heap, HeapManager

from .conftest import heap_path

CTX = mp.get_context("fork")
MOVER, VICTIM = 2, 3
N_OBJECTS = 200_000


def mover(path, slots, chunks, go, done):
    def lease(kind, count):
        pool = slots if kind == "records" else chunks
        if not pool:
            raise AssertionError(f"the test pre-leased too few {kind}")
        out = pool[-count:]
        del pool[-count:]
        return out

    try:
        heap = Heap.open(path, MOVER, lease)
        heap.free_slots = []
        go.wait(10)
        for _ in range(N_OBJECTS):
            heap.alloc_vec(np.uint8, 16).move_to(VICTIM)   # the victim is already dead
        done.value = 1
        os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(3)


def test_reclaim_never_combines_fields_read_at_different_moments():
    path = heap_path()
    m = HeapManager.create(path, 32 << 20, records=1 << 20, max_domains=8)
    p = None
    try:
        m.register_domain(MOVER)
        m.register_domain(VICTIM)
        m.reclaim(VICTIM)                       # dead before the mover starts
        slots = m.lease(MOVER, "records", N_OBJECTS)
        chunks = m.lease(MOVER, "chunks", N_OBJECTS * 64 // (64 << 10) + 1)
        go, done = CTX.Event(), CTX.RawValue("i", 0)
        p = CTX.Process(target=mover, args=(path, slots, chunks, go, done), daemon=True)
        p.start()
        go.set()
        reclaims = 0
        while p.is_alive() or reclaims == 0:
            m.reclaim(VICTIM)                   # frees what was moved to it meanwhile
            reclaims += 1
        p.join(10)
        assert p.exitcode == 0 and done.value == 1
        m.reclaim(VICTIM)
        m.reclaim(MOVER)
        assert m.check() == []
        assert m.stats()["objects"] == 0, "a live object was left with no owner able to free it"
    finally:
        if p is not None and p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        m.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
