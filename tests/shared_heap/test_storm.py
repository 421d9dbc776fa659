"""Multi-process storm: forked domains allocate, fill, move and free objects while the
test SIGKILLs them at random; every dead domain is reclaimed while the others keep going.
Afterwards the checker must be clean and every surviving object's checksum must verify."""

import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import random
import signal
import struct
import threading
import time
import zlib

import numpy as np
import pytest

from redleaf.shared_heap import Heap, HeapError, HeapExhausted, HeapManager, OwnershipError
from redleaf.shared_heap.layout import K_VEC, R_LIVE

from .conftest import heap_path

WIRE = struct.Struct("<III")
CTX = mp.get_context("fork")


def _fill(rng: random.Random, h) -> None:
    n = len(h)
    payload = rng.randbytes(n - 4)
    buf = h.buf
    buf[4:] = payload
    buf[:4] = struct.pack("<I", zlib.crc32(payload))


def _ok(buf) -> bool:
    return struct.unpack("<I", bytes(buf[:4]))[0] == zlib.crc32(buf[4:])


def worker(path, did, pos, conn, rfds, wfds, ids, errors, stop, seed):
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    seq = [0]

    def lease(kind, count):
        # numbered: an answer that comes after we gave up waiting must not be taken as
        # the answer to a later request (records as chunks, or the other way round)
        seq[0] += 1
        conn.send((did, kind, count, seq[0]))
        while True:
            if not conn.poll(10):
                raise HeapExhausted("lease server did not answer")
            n, ok, val = conn.recv()
            if n == seq[0]:
                break
        if not ok:
            raise HeapExhausted(val)
        return val

    try:
        heap = Heap.open(path, did, lease)
        rng = random.Random(seed)
        owned = []
        while not stop.value:
            try:
                data = os.read(rfds[pos], WIRE.size * 64)
            except BlockingIOError:
                data = b""
            for i in range(0, len(data) - len(data) % WIRE.size, WIRE.size):
                try:
                    h = heap.adopt(*WIRE.unpack_from(data, i))
                except OwnershipError:
                    continue          # sent to my predecessor at this position
                if not _ok(h.buf):
                    errors[pos] += 1
                owned.append(h)
            op = rng.random()
            if op < 0.45 or not owned:
                try:
                    h = heap.alloc_vec(np.uint8, rng.choice((16, 100, 3000, 40000, 70000)))
                except HeapExhausted:
                    if owned:
                        owned.pop(rng.randrange(len(owned))).drop()
                    continue
                _fill(rng, h)
                owned.append(h)
            elif op < 0.7:
                h = owned.pop(rng.randrange(len(owned)))
                if not _ok(h.buf):
                    errors[pos] += 1
                h.drop()
            else:
                q = rng.randrange(len(wfds))
                if q == pos:
                    continue
                h = owned.pop(rng.randrange(len(owned)))
                w = h.move_to(ids[q])
                try:
                    os.write(wfds[q], WIRE.pack(*w))
                except BlockingIOError:
                    pass              # lost in transit: reclaimed with the receiver
        os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(3)


def run_storm(seconds: float, workers: int = 3, kill_every=(0.05, 0.3)):
    path = heap_path()
    m = HeapManager.create(path, 16 << 20, records=8192, max_domains=64)
    lock = threading.Lock()
    pipes = [os.pipe() for _ in range(workers)]
    for r, w in pipes:
        os.set_blocking(r, False)
        os.set_blocking(w, False)
    rfds = [r for r, _ in pipes]
    wfds = [w for _, w in pipes]
    ids = CTX.RawArray("I", workers)
    errors = CTX.RawArray("i", workers)
    # not an Event: its semaphore stays held forever if a worker is killed inside is_set()
    stop = CTX.RawValue("i", 0)
    conns = {}
    procs = {}
    serving = True
    next_id = [2]
    rng = random.Random(1234)

    def serve():
        while serving:
            ready = mpc.wait(list(conns.values()), timeout=0.05) if conns else time.sleep(0.05)
            for c in ready or ():
                try:
                    did, kind, count, n = c.recv()
                except (EOFError, OSError):
                    for k, v in list(conns.items()):
                        if v is c:
                            conns.pop(k, None)  # the main thread may have replaced it already
                    continue
                try:
                    with lock:
                        res = (n, True, m.lease(did, kind, count))
                except (HeapError, ValueError) as e:
                    res = (n, False, str(e))
                try:
                    c.send(res)
                except OSError:
                    pass

    free_ids = []   # reclaimed ids, reused oldest first (stale wires to them must be refused)

    def assign(pos):
        if next_id[0] < 60:
            did = next_id[0]
            next_id[0] += 1
        else:
            did = free_ids.pop(0)
        with lock:
            m.register_domain(did)
        ids[pos] = did
        return did

    def spawn(pos, did=None):
        if did is None:
            did = assign(pos)
        parent_end, child_end = CTX.Pipe()
        p = CTX.Process(target=worker, args=(path, did, pos, child_end, rfds, wfds, ids, errors,
                                             stop, rng.randrange(1 << 30)), daemon=True)
        p.start()
        child_end.close()
        conns[did] = parent_end
        procs[pos] = (p, did)

    kills = 0
    crashed = []   # incarnations that ended before their kill: a worker only ends when told
    t = threading.Thread(target=serve, daemon=True)
    try:
        # every position has an id before any worker runs: a worker may move objects to
        # any position at once (id 0 is the heap's record pool, not a domain)
        for pos, did in [(pos, assign(pos)) for pos in range(workers)]:
            spawn(pos, did)
        t.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(*kill_every))
            pos = rng.randrange(workers)
            p, did = procs[pos]
            if p.exitcode is not None:
                crashed.append((did, p.exitcode))
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            kills += 1
            with lock:
                m.reclaim(did)
            conns.pop(did, None)
            free_ids.append(did)
            spawn(pos)
        stop.value = 1
        for pos, (p, did) in procs.items():
            p.join(10)
            assert p.exitcode in (0, -signal.SIGKILL), f"worker {did} failed: {p.exitcode}"
        serving = False
        t.join(2)
        assert crashed == [], f"workers (id, exit code) died on their own (traceback above): {crashed}"
        assert sum(errors) == 0, "a worker saw a corrupted object"
        with lock:
            m.sweep_orphans()
            assert m.check() == []
            # every surviving object must hold intact data
            rec = m.hf.records
            live = np.flatnonzero((rec["state"] == R_LIVE) & (rec["kind"] == K_VEC))
            for s in live:
                off, size = int(rec["offset"][s]), int(rec["size"][s])
                assert _ok(m.hf.mem[off:off + size]), f"object {s} corrupted"
            for pos, (p, did) in procs.items():
                if did is not None:
                    m.reclaim(did)
            m.sweep_orphans()
            assert m.check() == []
            st = m.stats()
            left = np.flatnonzero(rec["state"] == R_LIVE)
            assert st["objects"] == 0 and st["free_bytes"] == st["arena_bytes"], (
                st, [(int(s), int(rec["owner"][s]), int(rec["parent"][s]), int(rec["borrower"][s]),
                      int(m.hf.domains["state"][rec["owner"][s]])) for s in left[:8]],
                [did for _p, did in procs.values()])
        return kills, len(live)
    finally:
        serving = False
        stop.value = 1
        for p, _ in procs.values():
            if p.is_alive():
                p.kill()
            p.join(5)
        for c in conns.values():
            c.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        m.close()


def test_storm_short():
    kills, survivors = run_storm(3.0)
    assert kills >= 5


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="set RUN_SLOW=1 for the long storm")
def test_storm_long():
    kills, _ = run_storm(60.0, workers=4, kill_every=(0.01, 0.2))
    assert kills >= 100
