"""The watchdog: a domain whose heartbeat stops moving is hung, and is killed.

Owns: the heartbeat bookkeeping of each entry (last value seen, when it moved) and
the hang limits.  Calls the heap's per-domain runtime area (read only) and
Lifecycle.kill_hung; the death that follows is an ordinary exit event.  One check
kills every hung domain it finds (any number in one tick).
"""

from __future__ import annotations

import struct

from redleaf.domains.doorbell import RA_BUSY, RA_HEARTBEAT

from .table import RUNNING, STARTING

BUSY_WATCHDOG_FACTOR = 10  # a domain inside a call gets this many watchdog periods
STARTING_LIMIT_S = 30.0  # imports and constructors may be slow; a start is not a hang
_U64 = struct.Struct("<Q")


class Watchdog:
    def __init__(self, table, heap, default_s: float, kill_hung):
        self.table = table
        self.heap = heap
        self.default_s = default_s
        self.kill_hung = kill_hung

    def check(self, now: float) -> None:
        for e in list(self.table.by_id.values()):
            if e.kind != "domain" or e.state not in (RUNNING, STARTING) or not e.pid:
                continue
            area = self.heap.runtime_area(e.id)
            hb = _U64.unpack_from(area, RA_HEARTBEAT)[0]
            if hb != e.heartbeat:
                e.heartbeat = hb
                e.heartbeat_at = now
                continue
            limit = e.spec.watchdog_s or self.default_s
            if e.state == STARTING:
                limit = max(limit, STARTING_LIMIT_S)
            elif area[RA_BUSY]:
                # Inside a call: a long method is not a hang.  Its callers' deadlines
                # (RpcTimeout, then report_hang) bound it; this is the backstop.
                limit = max(limit * BUSY_WATCHDOG_FACTOR, 60.0)
            if now - e.heartbeat_at > limit:
                self.kill_hung(e, f"watchdog: missed its heartbeat for {limit:.1f}s")
                e.heartbeat_at = now
