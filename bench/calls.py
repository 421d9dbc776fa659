"""`redleaf bench calls`: RedLeaf's cross-domain call microbenchmark, with peers.

Cases: null, int, rref (move a 64-byte RRef and get it back), borrow, move-64B,
move-4KiB, move-1MiB, move-64MiB; hot (back-to-back) and cold (the callee has gone
to sleep between calls).  Peers on the same cases in the same run: inprocess,
pyzmq-reqrep-ipc, mp-pipe, socketpair (for the move cases they send the bytes).

redleaf-colocated (DESIGN §7a): the same calls (all but null-cold: a co-located
callee never sleeps apart from its caller) between two domains of one group,
Echo and a CallLoad domain (bench/colo.py) that runs the timing loop on the group's
thread and hands the samples back in the heap.
"""

from __future__ import annotations

import argparse

import numpy as np

from redleaf.bench import row, summarize
from redleaf.bench.peers import PipePeer, SocketpairPeer, ZmqPeer, time_calls

B = "calls"
SIZES = {"move-64B": 64, "move-4KiB": 4096, "move-1MiB": 1 << 20, "move-64MiB": 64 << 20}
MANIFEST = """
[heap]
size = "320MiB"
records = 65536
[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
"""
COLO_MANIFEST = """
[heap]
size = "320MiB"
records = 65536
[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
group = "calls"
[[domain]]
name = "load"
target = "redleaf.bench.colo:CallLoadDomain"
uses = ["echo"]
group = "calls"
"""
COLO_CASES = (("null", 0), ("int", 0), ("rref", 64), ("borrow", 64), *SIZES.items())


def _iters(size: int, n: int) -> int:
    return n if size <= 4096 else max(20, n // 50) if size <= (1 << 20) else max(10, n // 500)


def _warm_up(fn, seconds: float = 1.0) -> None:
    """Steady state before measuring, for every system alike: the first round trips
    after a start run slower (CPU frequency, where the scheduler places the two
    processes), for redleaf and the peers."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            fn()


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench calls")
    ap.add_argument("-n", type=int, default=20000, help="calls per small case")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    n = 2000 if a.quick else a.n
    rows: list[dict] = []
    med: dict[tuple[str, str], float] = {}

    def add(case, system, samples):
        rs = summarize(B, case, system, samples, "us")
        med[(case, system)] = rs[0]["value"]
        rows.extend(rs)

    from redleaf.domains.builtin.echo import Echo, EchoDomain
    from redleaf.supervisor.instance import Instance

    # in-process Python method call
    obj = EchoDomain(None)
    add("null", "inprocess", time_calls(obj.null, n))
    add("int", "inprocess", time_calls(lambda: obj.inc(1), n))

    with Instance(MANIFEST) as inst:
        with inst.attach() as d:
            e = d.lookup("echo", Echo)
            _warm_up(e.null)
            add("null", "redleaf", time_calls(e.null, n))
            add("int", "redleaf", time_calls(lambda: e.inc(1), n))
            box = [d.heap.alloc_vec(np.uint8, 64)]

            def rref():
                box[0] = e.roundtrip(box[0])

            add("rref", "redleaf", time_calls(rref, n))
            add("borrow", "redleaf", time_calls(lambda: e.peek(box[0]), n))
            box[0].drop()
            for case, size in SIZES.items():
                box[0] = d.heap.alloc_vec(np.uint8, size)
                box[0].np[:1] = 1
                add(case, "redleaf", time_calls(rref, _iters(size, n)))
                box[0].drop()
            add("null-cold", "redleaf", time_calls(e.null, max(200, n // 20), gap_s=0.002))

    from redleaf.bench.colo import CallLoad

    with Instance(COLO_MANIFEST) as inst:
        inst.wait_state("load", "running", timeout=30)
        with inst.attach() as d:
            load = d.lookup("load", CallLoad)
            for case, size in COLO_CASES:
                v = load.measure(case, _iters(size, n), size)
                add(case, "redleaf-colocated", v.np.tolist())
                v.drop()

    for peer_cls in (ZmqPeer, PipePeer, SocketpairPeer):
        peer = peer_cls()
        try:
            _warm_up(lambda: peer.call(b""))
            add("null", peer.name, time_calls(lambda: peer.call(b""), n))
            add("int", peer.name, time_calls(lambda: peer.call(b"\x01"), n))
            for case, size in SIZES.items():
                payload = bytes(size)
                add(case, peer.name, time_calls(lambda: peer.call(payload), _iters(size, n)))
            if peer.name == "socketpair":
                add("null-cold", peer.name, time_calls(lambda: peer.call(b""), max(200, n // 20), gap_s=0.002))
        finally:
            peer.close()

    def ratio(case, name, a_key, b_key):
        if a_key in med and b_key in med and med[b_key] > 0:
            rows.append(row(B, case, name, "ratio", med[a_key] / med[b_key], "x"))

    ratio("null", "pyzmq-reqrep-ipc/redleaf", ("null", "pyzmq-reqrep-ipc"), ("null", "redleaf"))
    ratio("rref", "redleaf-rref/redleaf-null", ("rref", "redleaf"), ("null", "redleaf"))
    ratio("rref", "redleaf-colocated-rref/redleaf-colocated-null", ("rref", "redleaf-colocated"),
          ("null", "redleaf-colocated"))
    ratio("null", "redleaf/redleaf-colocated", ("null", "redleaf"), ("null", "redleaf-colocated"))
    ratio("move-64MiB", "redleaf-64MiB/redleaf-64B", ("move-64MiB", "redleaf"), ("move-64B", "redleaf"))
    ratio("move-64MiB", "mp-pipe/redleaf", ("move-64MiB", "mp-pipe"), ("move-64MiB", "redleaf"))
    ratio("move-64MiB", "redleaf-colocated-64MiB/redleaf-colocated-64B", ("move-64MiB", "redleaf-colocated"),
          ("move-64B", "redleaf-colocated"))
    ratio("null-cold", "redleaf/socketpair", ("null-cold", "redleaf"), ("null-cold", "socketpair"))
    return rows
