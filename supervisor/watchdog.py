"""The watchdog: a domain whose heartbeat stops moving is hung, and is killed.

Owns: the heartbeat bookkeeping of each entry (last value seen, when it moved), the
hang limits, and the hang reports being verified.  A caller's `report_hang` is a
hint, never a verdict (the reporter may lie, or may have broken its own channel, e.g.
by a request sequence number of 2**64-1 that its callee will never answer again):
the callee is killed only if, for HANG_CONFIRM_S after the report, the reporter's
call is still outstanding on their channel and the callee's heartbeat has not moved.
A live domain beats whenever it waits (at least every IDLE_POLL_MS while idle, and
as it spins on calls of its own), so a callee that can serve is never killed on a
report, and one that truly hangs is killed HANG_CONFIRM_S later.  Calls the heap's per-domain runtime area (read only) and
Lifecycle.kill_hung; the death that follows is an ordinary exit event.  One check
kills every hung domain it finds (any number in one tick).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from redleaf.domains import channel as chan
from redleaf.domains.doorbell import RA_BUSY, RA_HEARTBEAT

from .table import RUNNING, STARTING

BUSY_WATCHDOG_FACTOR = 10  # a domain inside a call gets this many watchdog periods
STARTING_LIMIT_S = 30.0  # imports and constructors may be slow; a start is not a hang
#: a reported callee must stand still this long (10 idle beats) before it is killed
HANG_CONFIRM_S = 1.0
_U64 = struct.Struct("<Q")

log = logging.getLogger("redleaf.supervisor")


@dataclass
class Suspect:
    callee: object  # the Entry
    reporter: int
    rec: object  # the ChannelRec between them
    heartbeat: int
    since: float


class Watchdog:
    def __init__(self, table, heap, default_s: float, kill_hung):
        self.table = table
        self.heap = heap
        self.default_s = default_s
        self.kill_hung = kill_hung
        self.suspects: dict[int, Suspect] = {}  # callee id -> the report being verified
        self.channels = None  # set by the daemon: the live channel registry

    def _heartbeat(self, did: int) -> int:
        return _U64.unpack_from(self.heap.runtime_area(did), RA_HEARTBEAT)[0]

    def suspect(self, callee, reporter, rec, now: float) -> None:
        """A hang report: verified by `check` over the next HANG_CONFIRM_S."""
        if callee.id not in self.suspects:  # a repeated report does not restart the clock
            self.suspects[callee.id] = Suspect(callee, reporter.id, rec, self._heartbeat(callee.id), now)

    def _verify(self, now: float) -> None:
        for did, s in list(self.suspects.items()):
            e = s.callee
            buf = s.rec.buf
            why = None
            if self.table.by_id.get(did) is not e or not e.alive or not e.pid:
                why = "it is gone already"
            elif self.channels is not None and self.channels.channels.get(s.rec.id) is not s.rec:
                why = "the reporter's channel is closed"
            elif _U64.unpack_from(buf, chan.REQ_SEQ)[0] == _U64.unpack_from(buf, chan.RESP_SEQ)[0]:
                why = "no call of the reporter's is outstanding"
            elif self._heartbeat(did) != s.heartbeat:
                why = "its heartbeat moves"
            if why is not None:
                del self.suspects[did]
                if why != "it is gone already":
                    log.info("hang report about %s by domain %d not confirmed: %s", e.name, s.reporter, why)
                continue
            if now - s.since >= HANG_CONFIRM_S:
                del self.suspects[did]
                busy = " inside a call" if self.heap.runtime_area(did)[RA_BUSY] else ""
                self.kill_hung(e, f"reported hung by domain {s.reporter} (call deadline passed) and confirmed: "
                                  f"no heartbeat{busy} for {now - s.since:.1f}s with the call outstanding")

    def check(self, now: float) -> None:
        self._verify(now)
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
