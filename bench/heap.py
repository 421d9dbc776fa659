"""Exchange-heap benchmark: allocation cost, two-process throughput, reclaim time.

Peers in the same run (system "inprocess"): a Python ``bytearray`` and a numpy array of
the same size, i.e. what a single process pays for a private object.  Every heap file
made here is removed, even on error.

Alloc+free metrics, per operation:
  median, p99  of individually timed operations (perf_counter_ns around each one),
               less the timer's own cost, measured in the same run (the median of
               back-to-back clock reads); a peer's 0.1 us operation is otherwise half
               timer.
  mean         total time / operations of untimed loops (no clock in the loop).
  ratio        redleaf mean / inprocess (bytearray) mean.
The systems take turns in chunks, so a change in the machine's load hits them alike.
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


def _timer_cost_ns(n: int = 20000) -> int:
    """Median cost of the timing itself: two clock reads and an append, nothing between."""
    pc = time.perf_counter_ns
    out = []
    ap = out.append
    for _ in range(n):
        t0 = pc()
        ap(pc() - t0)
    return int(statistics.median(out))


def _alloc_free_cases(h, quick):
    rows = []
    rounds, batch = (30, 500) if quick else (200, 2000)
    pc = time.perf_counter_ns
    for case, n in (("alloc-free-64B", 64), ("alloc-free-4KiB", 4096)):
        # Each system twice: an untimed loop (for the mean) and a loop that times every
        # operation (for the percentiles); the timed loops differ from the untimed ones
        # only by the clock reads around the operation.
        def rl(k, n=n):
            a = h.alloc_vec
            for _ in range(k):
                a(np.uint8, n).drop()

        def rl_t(k, out, n=n):
            a = h.alloc_vec
            ap = out.append
            for _ in range(k):
                t0 = pc()
                a(np.uint8, n).drop()
                ap(pc() - t0)

        def ba(k, n=n):
            for _ in range(k):
                bytearray(n)

        def ba_t(k, out, n=n):
            ap = out.append
            for _ in range(k):
                t0 = pc()
                bytearray(n)
                ap(pc() - t0)

        def npa(k, n=n):
            z = np.zeros
            for _ in range(k):
                z(n, np.uint8)

        def npa_t(k, out, n=n):
            z = np.zeros
            ap = out.append
            for _ in range(k):
                t0 = pc()
                z(n, np.uint8)
                ap(pc() - t0)

        systems = [("redleaf", case, rl, rl_t), ("inprocess", case, ba, ba_t),
                   ("inprocess", case + "-numpy", npa, npa_t)]
        rl(batch)  # warm the free lists
        timer = _timer_cost_ns()
        spent = {(s_, c): 0 for s_, c, _u, _t in systems}
        per_op: dict[tuple[str, str], list[int]] = {(s_, c): [] for s_, c, _u, _t in systems}
        for r in range(rounds):
            for system, c, untimed, timed in (systems if r % 2 == 0 else systems[::-1]):
                t0 = pc()
                untimed(batch)
                spent[(system, c)] += pc() - t0
                timed(batch, per_op[(system, c)])
        mean = {}
        for key in spent:
            system, c = key
            xs = np.maximum(np.asarray(per_op[key], dtype=np.int64) - timer, 0)
            mean[key] = spent[key] / (rounds * batch)
            rows.append(_row(c, system, "median", float(np.median(xs)) / 1e3, "us"))
            rows.append(_row(c, system, "p99", float(np.percentile(xs, 99)) / 1e3, "us"))
            rows.append(_row(c, system, "mean", mean[key] / 1e3, "us"))
        rows.append(_row(case, "redleaf/inprocess", "ratio", mean[("redleaf", case)] / mean[("inprocess", case)], "x"))
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
            _row("alloc-free-64B-2proc", "redleaf/inprocess", "ratio", rate / prate, "x")]


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
