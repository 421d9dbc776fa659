"""`echo`: a client calling the builtin Echo domain with RRefs, verifying contents.

Each round allocates a vector in the exchange heap filled with a pattern that
depends on the round, lends it (`checksum`, the sum must match), moves it there and
back (`roundtrip`, every byte must come back), and `inc`s a counter.  An outage
error (DomainCrashed, DomainUnavailable, RpcTimeout) is expected when `echo` itself
is a target of the fault; any other error, or wrong data, never.

May call: domains (attach, Echo, errors), shared_heap.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .base import OUTAGE_ERRORS, Recorder, Workload

MANIFEST = """
[heap]
size = "32MiB"
records = 16384

[supervisor]
watchdog_s = 2.0

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.005
backoff_max_s = 0.05
"""
VEC = 1024
PAUSE_AFTER_ERROR_S = 0.002  # while echo restarts, do not spin on DomainUnavailable


class EchoWorkload(Workload):
    name = "echo"
    targets = "echo"
    methods = {"echo": ("checksum", "roundtrip", "inc")}
    deadline_s = 10.0  # Echo's interface deadline

    def manifest(self) -> str:
        return MANIFEST

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        return kind in OUTAGE_ERRORS and "echo" in targets

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        from redleaf.domains import attach
        from redleaf.domains.builtin.echo import Echo

        with attach(instance) as d:
            e = d.lookup("echo", Echo)
            i = 0
            while not stop.is_set():
                self.gate()
                i += 1
                if echo_round(d, e, i, rec, self.deadline_s, "echo"):
                    time.sleep(PAUSE_AFTER_ERROR_S)


def echo_round(d, e, i: int, rec: Recorder, dl: float, name: str) -> bool:
    """Round `i` of checked calls on the Echo proxy `e` (domain `name`), attached as
    `d`; True if a call failed with an RPC error (recorded, with `name` in its what)."""
    byte = i % 251
    v = d.heap.alloc_vec(np.uint8, VEC)
    v.np[:] = byte
    v.np[0] = (i >> 8) & 0xFF
    want = int(v.np.sum(dtype=np.uint64))
    with rec.call(f"{name}.checksum", dl) as c:
        got = e.checksum(v)
        if got != want:
            rec.problem(f"{name}.checksum of round {i} returned {got}, expected {want}")
    failed = c.failed
    back = None
    if not failed:
        with rec.call(f"{name}.roundtrip", dl) as c:
            back = e.roundtrip(v)
        failed = c.failed
    if back is not None:
        a = np.asarray(back.np)
        if a[0] != ((i >> 8) & 0xFF) or not (a[1:] == byte).all():
            rec.problem(f"{name}.roundtrip of round {i} returned different bytes")
        back.drop()
    if v.alive:
        v.drop()
    with rec.call(f"{name}.inc", dl) as c:
        if e.inc(i) != i + 1:
            rec.problem(f"{name}.inc({i}) returned a wrong value")
    return failed or c.failed
