"""The NVMe shadow: `BDev` and `NvmeBDev` in front of the driver, hiding its crashes.

`shadow = true` on the driver's manifest entry makes the supervisor run the real
driver as `<name>.driver` and this class under `<name>`, with
config["driver"] = "<name>.driver" and uses = {"driver": "<name>.driver"}.

Every call is forwarded.  On the batch path the client's own deques go to the
driver as they are; the shadow reads them in place (RecordOps.peek_records, one
vector read of the deque and the ownership records) to note each request it passes
on and each completion the driver hands back, so its cost per request is a dict
entry and, for writes, a 4 KiB copy.  It remembers each request
passed to the driver and not yet handed back: its block, its direction, and for a write a copy of
the data (the client's buffer goes into the driver, and a crash takes it along: the
supervisor reclaims everything a dead domain owned).  If the driver dies
(DomainCrashed; DomainUnavailable while it restarts; RpcTimeout, after which the
runtime kills it as hung), the shadow waits for the restarted driver (which resets
and re-initialises the controller) and re-issues every remembered request: reads
into fresh buffers, writes from fresh buffers filled from its copies.  The client
then collects a request object that is not the one it submitted, with the same
block, data and a status, exactly once:

* nothing is completed twice: a request is forgotten when it is handed to the
  client, the dead driver's completions died with it, and a completion of a
  request not in flight is refused (the shadow stops rather than pass it on);
* no acknowledged write is lost: a write is acknowledged only when the driver
  returned it completed, and after that nothing re-issues it;
* no error reaches the client: a crash is never reported, only waited out.  (A
  request the controller *fails*, e.g. an LBA out of range, is reported in its
  status as without a shadow: that is the device's answer, not a crash.)

Re-issuing a write that had already reached the disk writes the same data again,
which is harmless; the supervisor quiesces the device before the dead driver's
memory is reclaimed, so no stale command of the old incarnation runs afterwards.

For `BDev.write` the client lends its buffer; a borrowed buffer cannot be lent on,
so the shadow copies it into a buffer of its own and lends that to the driver.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np

from redleaf.domains.errors import DomainCrashed, DomainUnavailable, RpcTimeout
from redleaf.drivers.bdev import BLOCK_SIZE, BDev, Block, BlockError, BlockReq, NvmeBDev
from redleaf.shared_heap.batch import RecordOps, count_nonzero, has_duplicates, ownership_errors_as

from redleaf.drivers.one_client import OneClientAtATime

#: what a dead or restarting driver looks like from a proxy
DRIVER_GONE = (DomainCrashed, DomainUnavailable, RpcTimeout)

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
OFF_BLOCK = BlockReq.dtype.fields["block"][1]
OFF_STATUS = BlockReq.dtype.fields["status"][1]


class DriverLost(RuntimeError):
    """The driver did not come back within restart_timeout_s (it is `failed`).

    Escaping a call, it panics the shadow: clients then see DomainCrashed, the
    honest answer when there is no driver left to hide behind."""


@dataclass(slots=True)
class Pending:
    """A request the client submitted and has not collected."""

    block: int
    write: bool
    data: bytes | None  # the write's data, kept until the write completes


class InflightTable:
    """The requests passed to the driver and not yet handed back, by ownership slot.

    Why arrays over the slot numbers rather than a dict of objects: a batch is
    noted and forgotten with a few vector stores (the shadow's cost per request is
    what bounds `redleaf-shadow` against `redleaf`); only a write's data needs a
    Python object each, the copy of its 4 KiB."""

    def __init__(self, n_records: int):
        self.gen = np.zeros(n_records, dtype=np.int64)      # generation + 1; 0 = not in flight
        self.block = np.zeros(n_records, dtype=np.uint64)
        self.offset = np.zeros(n_records, dtype=np.int64)   # where the request object is
        self.write = np.zeros(n_records, dtype=bool)
        self.data: dict[int, bytes] = {}                     # slot -> a write's data
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def add(self, slots: np.ndarray, gens: np.ndarray, offsets, blocks, write: bool, datas=None) -> None:
        if count_nonzero(self.gen[slots]):  # ownership makes this impossible for a client
            raise RuntimeError("shadow bookkeeping: a request already in flight was noted again")
        self.gen[slots] = gens + 1
        self.offset[slots] = offsets
        self.block[slots] = blocks
        self.write[slots] = write
        if datas is not None:
            self.data.update(zip(slots.tolist(), datas))
        self.n += len(slots)

    def complete(self, slots: np.ndarray, gens: np.ndarray) -> np.ndarray:
        """Forget requests the driver completed (a request not in flight, or named
        twice, is refused); returns their offsets."""
        if count_nonzero(self.gen.take(slots, mode="clip") != gens + 1) or count_nonzero(
                (slots < 0) | (slots >= len(self.gen))) or (
                len(slots) > 1 and has_duplicates(slots)):
            raise DriverLost("the driver completed a request that was not in flight; "
                             "refusing to pass on a double completion")
        offs = self.offset[slots]
        self._forget(slots)
        return offs

    def forget(self, slots: np.ndarray, gens: np.ndarray) -> int:
        """Forget those of (slots, gens) that are in flight (the driver left them)."""
        mine = self.gen[slots] == gens + 1
        self._forget(slots[mine])
        return int(count_nonzero(mine))

    def _forget(self, slots: np.ndarray) -> None:
        self.gen[slots] = 0
        self.n -= len(slots)
        if self.data:
            pop = self.data.pop
            for s in slots.tolist():
                pop(s, None)

    def drain(self) -> list[Pending]:
        """Every request in flight (and forget them all), to re-issue."""
        slots = np.flatnonzero(self.gen)
        data = self.data
        out = [Pending(b, w, data.get(s)) for s, b, w in
               zip(slots.tolist(), self.block[slots].tolist(), self.write[slots].tolist())]
        self.gen[slots] = 0
        self.data = {}
        self.n = 0
        return out


class NvmeShadow(OneClientAtATime, BDev, NvmeBDev):
    client_error, client_iface = BlockError, "NvmeBDev"   # drivers/one_client.py
    def __init__(self, ctx):
        self.ctx = ctx
        self.heap = ctx.heap
        self.mem = ctx.heap.mem
        self.ops = RecordOps(ctx.heap, BlockReq)
        cfg = ctx.config
        self.driver_name = cfg.get("driver", f"{ctx.name}.driver")
        self.restart_timeout = float(cfg.get("restart_timeout_s", 30.0))
        # A driver that hangs inside a call is found by its caller's deadline.  Ours
        # must pass well before our clients' (BDev's 30 s), with room left to wait
        # for the restart and re-issue: else a driver hang reaches the client as
        # RpcTimeout, and the shadow runs out of restart_timeout (found by crashtest).
        self.driver_deadline = float(cfg.get("driver_deadline_s", 10.0))
        # Links that do not serve our own inbound calls while a driver call waits:
        # the shadow's bookkeeping must not be re-entered mid-call.
        deadline = time.monotonic() + self.restart_timeout
        self.bdev = self._connect(BDev, deadline)
        self.nvme = self._connect(NvmeBDev, deadline)
        self.block_size, self.nblocks = self._retry(self.bdev.info)
        self.depth = int(cfg.get("queue_depth", 256)) - 1
        self.inflight = InflightTable(self.heap.n_records)
        self.ready: list = []  # completed requests (our RRefs) not yet handed back
        self.dsub = self.dcol = None
        self._new_deques()
        self.wbuf = self.heap.alloc(Block)  # lent to the driver by write()
        self.submitted = self.completed = self.errors = 0
        self.abandoned = 0  # requests of clients that went away before collecting them
        self.recoveries = 0
        self.last_recovery_s = 0.0
        ctx.export(ctx.name, self, BDev)
        ctx.export(ctx.name, self, NvmeBDev)

    # -- recovery -----------------------------------------------------------------------
    def _connect(self, iface: type, deadline: float):
        while True:
            try:
                return self.ctx.rt.lookup(self.driver_name, iface, reentrant=False,
                                          deadline_s=self.driver_deadline)
            except DRIVER_GONE:
                if time.monotonic() > deadline:
                    raise DriverLost(f"{self.driver_name} is not running") from None
                time.sleep(0.005)

    def _new_deques(self) -> None:
        for d in (self.dsub, self.dcol):
            if d is not None and d.alive:  # the call failed before it moved them
                d.drop()
        self.dsub = self.heap.alloc_deque(BlockReq, self.depth)
        self.dcol = self.heap.alloc_deque(BlockReq, self.depth)

    def _wait_for_driver(self, deadline: float) -> None:
        """Until the restarted driver answers (plain calls re-look-up the name)."""
        delay = 0.0005
        while True:
            try:
                self.block_size, self.nblocks = self.bdev.info()
                return
            except DRIVER_GONE as e:
                if time.monotonic() > deadline:
                    raise DriverLost(f"{self.driver_name} did not come back within "
                                     f"{self.restart_timeout}s: {e}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.002)  # a restart takes ~20 ms: do not oversleep it

    def _retry(self, fn, *args):
        """fn(*args) for calls that carry no request: repeat until the driver answers."""
        deadline = time.monotonic() + self.restart_timeout
        while True:
            try:
                return fn(*args)
            except DRIVER_GONE:
                self._wait_for_driver(deadline)

    def _recover(self) -> None:
        """The driver died holding our deques and every request in flight: re-issue them.

        (Also after DomainUnavailable raised before anything was sent: then the
        deques and requests are still ours, and re-issuing copies is just as right.)"""
        t0 = time.monotonic()
        deadline = t0 + self.restart_timeout
        self.recoveries += 1
        owed = self.inflight.drain()
        while True:
            self._wait_for_driver(deadline)
            self._new_deques()
            try:
                while owed:
                    write = owed[-1].write
                    chunk = []
                    while owed and owed[-1].write == write and len(chunk) < self.depth:
                        chunk.append(owed.pop())
                    for p in chunk:
                        r = self.heap.alloc(BlockReq)
                        _U64.pack_into(self.mem, r.offset + OFF_BLOCK, p.block)
                        if write:
                            self.mem[r.offset:r.offset + BLOCK_SIZE] = p.data
                        self.inflight.add(np.array([r.slot]), np.array([r.gen]), r.offset, p.block, write,
                                          [p.data] if write else None)
                        self.dsub.push_back(r)
                    self._forward(write)
                self.last_recovery_s = time.monotonic() - t0
                return
            except DRIVER_GONE:
                owed += self.inflight.drain()

    def _forward(self, write: bool) -> None:
        """Pass `dsub` to the driver; keep what it returns completed in `ready`.

        If its queue is shallower than `queue_depth` said, it hands back what did
        not fit: poll until completions make room, and submit the rest."""
        n, self.dsub, self.dcol = self.nvme.submit_and_poll(self.dsub, self.dcol, write)
        self._take_completions()
        while len(self.dsub):
            _k, self.dcol = self.nvme.poll(self.dcol)
            self._take_completions()
            n, self.dsub, self.dcol = self.nvme.submit_and_poll(self.dsub, self.dcol, write)
            self._take_completions()

    def _take_completions(self) -> None:
        ready, inflight = self.ready, self.inflight
        for r in self.dcol:
            if inflight.forget(np.array([r.slot]), np.array([r.gen])):
                ready.append(r)
            else:
                r.drop()  # not ours (cannot happen with a well-behaved driver)

    # -- NvmeBDev -------------------------------------------------------------------------
    def _outstanding(self) -> int:
        return len(self.inflight) + len(self.ready)

    def _abandon(self) -> None:
        """Wait for the requests of a client that went away and free them."""
        deadline = time.monotonic() + self.restart_timeout
        n = self._outstanding()
        while len(self.inflight):
            try:
                _k, self.dcol = self.nvme.poll(self.dcol)
                self._take_completions()
            except DRIVER_GONE:
                self._recover()  # re-issued: they come back in `ready`
            if len(self.inflight) and time.monotonic() > deadline:
                raise BlockError(f"{self.ctx.name}: the requests of a departed client did not complete "
                                 f"within {self.restart_timeout}s")
        for r in self.ready:
            r.drop()
        self.ready = []
        self.abandoned += n

    @ownership_errors_as(BlockError)
    def submit_and_poll(self, submit, collect, write: bool):
        """Record the requests in place (peek) and pass the client's deques on as they are."""
        self._claim()
        if len(submit) + len(self.inflight) > self.depth:
            return self._submit_and_poll_copying(submit, collect, write)
        sub_cap, col_cap = submit.capacity, collect.capacity
        mem, inflight = self.mem, self.inflight
        slots, gens, offs = self.ops.peek_records(submit)
        inflight.add(slots, gens, offs, self.ops.get(offs, "block"), write,
                     [bytes(mem[o:o + BLOCK_SIZE]) for o in offs.tolist()] if write else None)
        self.submitted += len(slots)
        before = len(collect)  # what the client has not drained yet
        try:
            n, submit, collect = self.nvme.submit_and_poll(submit, collect, write)
        except DRIVER_GONE:
            # Everything recorded is re-issued from our copies.  If the call failed
            # before sending, the client's deques are still here: its requests must
            # not come back as "not taken" too, so they go; its collect stays.
            if submit.alive:
                submit.drop()
            self._recover()
            submit = self.heap.alloc_deque(BlockReq, sub_cap)
            if not collect.alive:
                collect = self.heap.alloc_deque(BlockReq, col_cap)
            self._hand_back(collect)
            return len(slots), submit, collect
        except BlockError:
            # the driver refused the client's deque (changed under us since we read
            # it): nothing of it is in flight
            self.submitted -= self.inflight.forget(slots, gens)
            raise
        if n != len(slots):  # the driver left some: they are not in flight
            left_slots, left_gens, _offs = self.ops.peek_records(submit)
            self.submitted -= inflight.forget(left_slots, left_gens)
        self._completed_in(collect, skip=before)
        self._hand_back(collect)
        return n, submit, collect

    @ownership_errors_as(BlockError)
    def poll(self, collect):
        self._claim()
        if self.ready or not self.inflight:
            return self._hand_back(collect), collect
        col_cap = collect.capacity
        before = len(collect)
        try:
            _k, collect = self.nvme.poll(collect)
        except DRIVER_GONE:
            self._recover()
            if not collect.alive:
                collect = self.heap.alloc_deque(BlockReq, col_cap)
                before = 0
            return self._hand_back(collect), collect
        k = self._completed_in(collect, skip=before)
        return k + self._hand_back(collect), collect

    def _completed_in(self, collect, skip: int = 0) -> int:
        """Forget the requests the driver put in `collect` (after the first `skip`)."""
        slots, gens = self.ops.peek_pairs(collect, skip)  # checked against our table
        if not slots.size:
            return 0
        try:
            offs = self.inflight.complete(slots, gens)
        except DriverLost as e:
            raise DriverLost(f"{self.driver_name}: {e}") from None
        self.errors += int(count_nonzero(self.ops.get(offs, "status")))
        self.completed += offs.size
        return int(offs.size)

    def _submit_and_poll_copying(self, submit, collect, write: bool):
        """More than the driver's queue can hold: move what fits into our own deque."""
        k = min(self.depth - len(self.inflight), len(submit))
        mem, inflight, dsub = self.mem, self.inflight, self.dsub
        unpack = _U64.unpack_from
        for _ in range(k):
            r = submit.pop_front()
            off = r.offset
            inflight.add(np.array([r.slot]), np.array([r.gen]), off, unpack(mem, off + OFF_BLOCK)[0], write,
                         [bytes(mem[off:off + BLOCK_SIZE])] if write else None)
            dsub.push_back(r)
        self.submitted += k
        try:
            self._forward(write)
        except DRIVER_GONE:
            self._recover()
        self._hand_back(collect)
        return k, submit, collect

    def _hand_back(self, collect) -> int:
        """Completions of re-issued requests (our RRefs), as far as `collect` has room."""
        ready = self.ready
        if not ready:
            return 0
        room = collect.capacity - len(collect)
        give, self.ready = ready[:room], ready[room:]
        mem = self.mem
        for r in give:
            if _U32.unpack_from(mem, r.offset + OFF_STATUS)[0]:
                self.errors += 1
            collect.push_back(r)
        self.completed += len(give)
        return len(give)

    def stats(self) -> tuple[int, int, int, int]:
        """The client's view, across driver restarts."""
        return self.submitted, self.completed, self.errors, self.submitted - self.completed - self.abandoned

    # -- BDev -----------------------------------------------------------------------------
    def read(self, block: int, buf):
        deadline = time.monotonic() + self.restart_timeout
        while True:
            try:
                return self.bdev.read(block, buf)
            except DRIVER_GONE:
                if not buf.alive:  # it went down with the driver: read into a fresh one
                    buf = self.heap.alloc(Block)
                self._wait_for_driver(deadline)
                self.recoveries += 1

    def write(self, block: int, buf) -> None:
        self.wbuf.buf[:] = buf.buf
        self._retry(self.bdev.write, block, self.wbuf)

    def flush(self) -> None:
        self._retry(self.bdev.flush)

    def info(self) -> tuple[int, int]:
        return self.block_size, self.nblocks
