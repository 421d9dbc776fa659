"""The channel registry: the shared-memory call channels between domains, and the
heap objects a dead caller had lent (borrowed) to a callee.

Owns: `ChannelRec` records and channel ids; the channels' shared-memory segments
(one memfd per channel, mode 0600, described by an unguessable tag: see
domains/channel.py), from creation to unmap; closing an end, failing calls in flight when a party dies,
and deferring the release of a dead caller's borrowed objects until the callee's
call that borrowed them is over.  Calls the heap, domains.channel (the channel layout
and segments), the domains' doorbells, the table (read only) and the endpoints
(channel_closed notices).

Segment lifetime: created at lookup, its descriptor told to the caller (lookup
reply) and the callee (push) and to no one else; the supervisor's fd closed by `tick`
as soon as both parties have set their MAPPED flag, or MAP_DEADLINE_S after creation,
whichever comes first (from then on the segment cannot be opened by anyone); its fd
(if still open) closed and its mapping unmapped when the channel is freed, and every
one at `close_all` (the instance going down).  The memory goes when the last of the
three mappings does.

Accounting (`snapshot`, read only, for the user's `heap --check`): every record with
its parties and what keeps it, and the channel memfds this process really holds (fds
and mappings, read from /proc/self), so a checker can tell a record that should have
been freed, or a segment that outlived its record, from the outside.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field

from redleaf.domains import channel as chan
from redleaf.domains.doorbell import Bell

#: a party that has not mapped its channel by then never will: the descriptor stops working
MAP_DEADLINE_S = 30.0
_U64 = struct.Struct("<Q")
#: how the kernel names a channel segment in /proc/<pid>/fd and /proc/<pid>/maps
#: (domains/channel.py create_segment names every memfd "redleaf-chan-<tag>")
MEMFD_PREFIX = "/memfd:redleaf-chan-"


def own_channel_memfds() -> tuple[int, int]:
    """(open fds, distinct mapped segments) of channel memfds in this process, from
    /proc/self: what the registry's records account for, counted independently of them."""
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(MEMFD_PREFIX):
                fds += 1
        except OSError:
            continue  # the listing's own fd, or one closed meanwhile
    maps = set()
    with open("/proc/self/maps") as fh:
        for line in fh:
            i = line.find(MEMFD_PREFIX)
            if i >= 0:
                maps.add(line[i:].split(" ")[0].strip())
    return fds, len(maps)


@dataclass
class ChannelRec:
    id: int
    caller: int
    callee: int
    segment: str  # its descriptor, as the parties are told it
    fd: int  # the supervisor's memfd, until both parties mapped it (-1 after)
    buf: memoryview  # the supervisor's mapping (unmapped when the last view goes)
    size: int
    map_by: float  # the deadline for both parties to map it
    ends: set = field(default_factory=set)
    deferred: list = field(default_factory=list)  # heap slots lent to the callee by a dead caller
    #: the caller died with a call in flight: what the callee moves back to it when that
    #: call ends lands owned by a dead id, after its reclaim ran; sweep then
    sweep_after: bool = False


class Channels:
    def __init__(self, table, heap, paths, endpoints):
        self.table = table
        self.heap = heap  # the HeapManager
        self.paths = paths
        self.out = endpoints
        self.channels: dict[int, ChannelRec] = {}
        self.next_id = 1

    def snapshot(self) -> dict:
        """The registry as plain data (no segment descriptor: it opens the channel), and
        the channel memfds this process holds, for `heap --check`."""
        fds, maps = own_channel_memfds()
        rows = [{"id": r.id, "caller": r.caller, "callee": r.callee, "ends": sorted(r.ends),
                 "deferred": len(r.deferred), "sweep_after": r.sweep_after, "fd_open": r.fd >= 0}
                for r in self.channels.values()]
        return {"channels": rows, "memfd_fds": fds, "memfd_maps": maps}

    def ring(self, did: int) -> None:
        """Wake domain `did` (its doorbell); a missing doorbell means it is gone."""
        try:
            b = Bell(self.paths.bell(did))
        except OSError:
            return
        b.ring()
        b.close()

    def open(self, caller, callee) -> ChannelRec:
        size = chan.channel_size()
        desc, fd, buf = chan.create_segment(size)
        chan.init_channel(buf, caller.id, callee.id)
        rec = ChannelRec(self.next_id, caller.id, callee.id, desc, fd, buf, size,
                         time.monotonic() + MAP_DEADLINE_S, ends={caller.id, callee.id})
        self.next_id += 1
        self.channels[rec.id] = rec
        return rec

    @staticmethod
    def _let_go(rec: ChannelRec) -> None:
        """Close the supervisor's fd: from now on the segment cannot be opened."""
        if rec.fd >= 0:
            os.close(rec.fd)
            rec.fd = -1

    def tick(self, now: float) -> None:
        """Close the segment of every channel both parties have mapped, or whose deadline passed."""
        for rec in self.channels.values():
            if rec.fd >= 0 and (chan.both_mapped(rec.buf) or now > rec.map_by):
                self._let_go(rec)

    def close_all(self) -> None:
        """The instance goes down: no segment stays behind."""
        for rec in list(self.channels.values()):
            self._let_go(rec)
        self.channels.clear()  # the mappings go with the last views of them

    def between(self, caller: int, callee: int) -> ChannelRec | None:
        for rec in self.channels.values():
            if rec.caller == caller and rec.callee == callee:
                return rec
        return None

    def _notify_closed(self, rec: ChannelRec, did: int) -> None:
        callee = self.table.by_id.get(rec.callee)
        if callee is not None and callee.ident is not None and rec.callee in rec.ends:
            self.out.send(callee.ident, {"push": "channel_closed", "channel": rec.id, "peer": did})

    def drop_end(self, rec: ChannelRec, did: int) -> None:
        """Domain `did` closed its end of `rec`."""
        rec.ends.discard(did)
        if did == rec.caller and rec.callee in rec.ends:
            # in the channel itself, before the notice and before the closer's reply: a
            # callee asking Runtime.client_alive() gets the answer the caller saw
            chan.set_state(rec.buf, chan.CALLER_DEAD)
            self._notify_closed(rec, did)
        self.maybe_free(rec)

    def party_died(self, did: int) -> None:
        """Fail every call in flight to `did`; mark channels it called through."""
        for rec in list(self.channels.values()):
            if rec.callee == did:
                chan.fail_inflight(rec.buf)
                self.ring(rec.caller)  # even with nothing seen in flight: a racing post sees the mark
                rec.ends.discard(did)
            elif rec.caller == did:
                if _U64.unpack_from(rec.buf, chan.REQ_SEQ)[0] != _U64.unpack_from(rec.buf, chan.RESP_SEQ)[0]:
                    rec.sweep_after = True
                chan.set_state(rec.buf, chan.CALLER_DEAD)
                rec.ends.discard(did)
                self._notify_closed(rec, did)

    def defer(self, dead: int, slot: int, borrower: int) -> None:
        """A slot of dead domain `dead` is lent to `borrower`: free it after the call."""
        rec = self.between(dead, borrower)
        if rec is not None:
            rec.deferred.append(slot)
        else:
            self.heap.release_deferred(slot)

    def release_unused(self) -> None:
        for rec in list(self.channels.values()):
            self.maybe_free(rec)

    def maybe_free(self, rec: ChannelRec) -> None:
        if rec.ends or rec.deferred or rec.sweep_after:
            return
        chan.set_state(rec.buf, chan.CLOSED)
        self._let_go(rec)
        del self.channels[rec.id]  # the mapping goes with the last view of it

    def borrow_active(self, borrower: int, slot: int) -> bool:
        e = self.table.by_id.get(borrower)
        return e is not None and e.alive

    def settle_deferred(self) -> None:
        """Release lent slots whose borrowing call has ended (or whose callee is gone),
        and once a dead caller's last call has ended, free what the callee moved to it
        (the answer is posted after the move: a move never lands after the sweep)."""
        for rec in list(self.channels.values()):
            if not rec.deferred and not rec.sweep_after:
                continue
            callee = self.table.by_id.get(rec.callee)
            buf = rec.buf
            done = _U64.unpack_from(buf, chan.REQ_SEQ)[0] == _U64.unpack_from(buf, chan.RESP_SEQ)[0]
            if done or callee is None or not callee.alive:
                for slot in rec.deferred:
                    self.heap.release_deferred(slot)
                rec.deferred.clear()
                if rec.sweep_after:
                    rec.sweep_after = False
                    self.heap.sweep_orphans()
                self.maybe_free(rec)
