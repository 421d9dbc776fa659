"""Exchange-heap benchmark: allocation cost, two-process throughput, reclaim time.

Peers in the same run (system "inprocess"): a Python ``bytearray`` and a numpy array of
the same size, i.e. what a single process pays for a private object; ``ratio`` rows give
redleaf / peer. Every heap file made here is removed, even on error.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
import uuid

import numpy as np

from redleaf.shared_heap import Heap, HeapManager

BENCH = "heap"


def _row(case, system, metric, value, unit):
    return {"bench": BENCH, "case": case, "system": system, "metric": metric,
            "value": round(float(value), 4), "unit": unit}


def _path():
    return f"/dev/shm/redleaf-bench-{uuid.uuid4().hex}.heap"


class _World:
    def __init__(self, size, records):
        self.path = _path()
        self.m = HeapManager.create(self.path, size, records=records, max_domains=16)
        self.heaps = []

    def domain(self, did):
        self.m.register_domain(did)
        h = Heap.open(self.path, did, lambda k, c, d=did: self.m.lease(d, k, c), self.m.register_type)
        self.heaps.append(h)
        return h

    def close(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        for h in self.heaps:
            h.close()
        self.m.close()


def _batches(fn, batch, rounds):
    """Per-operation seconds, one sample per batch (timer overhead amortised)."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(batch)
        out.append((time.perf_counter() - t0) / batch)
    return out


def _summ(case, system, xs):
    xs = sorted(xs)
    return [_row(case, system, "median", statistics.median(xs) * 1e6, "us"),
            _row(case, system, "p99", xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e6, "us")]


def _alloc_free_cases(h, quick):
    rows = []
    rounds, batch = (30, 500) if quick else (200, 2000)
    for case, n in (("alloc-free-64B", 64), ("alloc-free-4KiB", 4096)):
        def rl(k, n=n):
            a = h.alloc_vec
            for _ in range(k):
                a(np.uint8, n).drop()

        def ba(k, n=n):
            for _ in range(k):
                bytearray(n)

        def npa(k, n=n):
            z = np.zeros
            for _ in range(k):
                z(n, np.uint8)

        rl(batch)  # warm the free lists
        red = _batches(rl, batch, rounds)
        pb = _batches(ba, batch, rounds)
        pn = _batches(npa, batch, rounds)
        rows += _summ(case, "redleaf", red)
        rows += _summ(case, "inprocess", pb)
        rows += _summ(case + "-numpy", "inprocess", pn)
        rows.append(_row(case, "redleaf", "ratio", statistics.median(red) / statistics.median(pb), "x"))
    return rows


def _thr_worker(path, did, conn, seconds):
    def lease(kind, count):
        conn.send((did, kind, count))
        return conn.recv()

    h = Heap.open(path, did, lease)
    a = h.alloc_vec
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(200):
            a(np.uint8, 64).drop()
        n += 200
    conn.send(("done", n, seconds))
    os._exit(0)


def _throughput(w, quick):
    seconds = 0.5 if quick else 2.0
    ctx = mp.get_context("fork")
    procs, conns = [], []
    try:
        for did in (2, 3):
            w.m.register_domain(did)
            a, b = ctx.Pipe()
            p = ctx.Process(target=_thr_worker, args=(w.path, did, b, seconds), daemon=True)
            p.start()
            procs.append(p)
            conns.append(a)
        total = 0
        waiting = list(conns)
        while waiting:
            ready = mp.connection.wait(waiting, timeout=seconds * 10 + 5)
            if not ready:
                raise RuntimeError("throughput workers did not finish")
            for c in ready:
                msg = c.recv()
                if msg[0] == "done":
                    total += msg[1]
                    waiting.remove(c)
                else:
                    c.send(w.m.lease(*msg))
        rate = total / seconds
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        for c in conns:
            c.close()
    # peer: two processes allocating private bytearrays
    def peer(q):
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(200):
                bytearray(64)
            n += 200
        q.put(n)
        os._exit(0)
    q = ctx.SimpleQueue()
    ps = [ctx.Process(target=peer, args=(q,), daemon=True) for _ in range(2)]
    try:
        for p in ps:
            p.start()
        prate = sum(q.get() for _ in ps) / seconds
    finally:
        for p in ps:
            if p.is_alive():
                p.kill()
            p.join(5)
    return [_row("alloc-free-64B-2proc", "redleaf", "rate", rate, "ops/s"),
            _row("alloc-free-64B-2proc", "inprocess", "rate", prate, "ops/s"),
            _row("alloc-free-64B-2proc", "redleaf", "ratio", rate / prate, "x")]


def _reclaim(quick):
    n = 100_000
    times = []
    for i in range(2 if quick else 5):
        w = _World(64 << 20, records=n + 4096)
        try:
            h = w.domain(2)
            keep = [h.alloc_vec(np.uint8, 64) for _ in range(n)]
            t0 = time.perf_counter()
            rep = w.m.reclaim(2)
            times.append(time.perf_counter() - t0)
            assert rep.objects == n, rep
            del keep
        finally:
            w.close()
    return [_row("reclaim-100k", "redleaf", "median", statistics.median(times) * 1e3, "ms")]


def run(quick=False) -> list[dict]:
    if isinstance(quick, (list, tuple)):   # `redleaf bench heap [--quick]` passes argv
        quick = "--quick" in quick
    rows = []
    w = _World(64 << 20, records=1 << 16)
    try:
        rows += _alloc_free_cases(w.domain(1), quick)
        rows += _throughput(w, quick)
    finally:
        w.close()
    rows += _reclaim(quick)
    return rows


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(run("--quick" in sys.argv), indent=None))
