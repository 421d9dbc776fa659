"""The NVMe driver domain: programs the emulated controller through its BAR, with
queues and data buffers in the exchange heap, and exports `BDev` and `NvmeBDev`.

Manifest:

    [[domain]]
    name = "nvme0"
    target = "redleaf.drivers.nvme.domain:NvmeDriver"
    config = { device = "nvme0-dev", queue_depth = 256 }

Every incarnation starts by binding the device and running the full init sequence
(reset, admin queue, enable, Identify, Set Features, Create I/O CQ/SQ): a restarted
driver finds the controller in whatever state its predecessor left it, exactly as
with a real card after a driver crash.

Waiting for the device: after ringing a doorbell the driver wakes the device process;
the device wakes the driver when it posts completions (the interrupt); in between
the driver spins briefly and then sleeps on its doorbell (Runtime.wait_until).

`NvmeBDev` semantics (as in RedLeaf): `submit_and_poll` takes as many requests as
the I/O queue has room for (one doorbell write for the whole batch), returns the
ones it could not take in `submit`, and moves every request completed so far into
`collect`.  It does not wait: the batch it took goes to the device right after the
answer (Runtime.defer), while the client prepares its next one.  The exception is
queue depth 1 (one request, nothing else in flight): the caller could only poll
next, so the driver issues it and waits (up to POLL_WAIT_S) for its completion
itself, which saves a call per request.  `poll` collects too, but if nothing has completed and
requests are in flight it waits up to POLL_WAIT_S for the first completion, so a
client that has nothing else to do does not spin through cross-domain calls.  The
batch path leaves LBA checking to the controller (an out-of-range block completes
with the NVMe status "LBA Out of Range" in `status`), the way hardware reports a
misprogrammed command.

One `NvmeBDev` client at a time (drivers/one_client.py says why and what
happens to a departed client's requests).  `BDev` calls are synchronous and serve
any number of clients.
"""

from __future__ import annotations

import time

import numpy as np

from redleaf.drivers.bdev import BLOCK_SIZE, BDev, BlockError, BlockReq, NvmeBDev
from redleaf.drivers.binding import DeviceBinding
from redleaf.shared_heap.batch import EMPTY, RecordOps, ownership_errors_as

from . import spec as S
from .driver_core import NvmeDriverCore, NvmeError
from redleaf.drivers.one_client import OneClientAtATime

#: bound on one wait inside `poll` (the client calls again if nothing arrived)
POLL_WAIT_S = 0.005
#: a synchronous BDev command that takes longer than this is reported as failed
SYNC_TIMEOUT_S = 10.0
#: longest single sleep waiting for the device (a backstop: the device's interrupt
#: normally wakes the driver at once)
WAIT_SLICE_S = 0.002
#: how long a clean stop waits for the controller's shutdown-complete status
SHUTDOWN_WAIT_S = 0.2

assert BlockReq.dtype.fields["data"][1] == 0, "BlockReq.data must come first (page-aligned DMA)"


class DeviceSetupError(RuntimeError):
    """The controller could not be brought up (the domain fails to start)."""


class NvmeDriver(OneClientAtATime, BDev, NvmeBDev):
    client_error, client_iface = BlockError, "NvmeBDev"   # drivers/one_client.py
    SHADOW = "redleaf.drivers.nvme.shadow:NvmeShadow"

    def __init__(self, ctx):
        self.ctx = ctx
        rt = self.rt = ctx.rt
        cfg = ctx.config
        device = cfg.get("device", "nvme0-dev")
        self.binding = DeviceBinding(ctx, device)  # queue memory: owned by this domain
        self.bar = self.binding.bar
        self.dev_waker = self.binding.waker
        self.mem = rt.mem
        self.core = core = NvmeDriverCore(self.bar, self.binding.dma_alloc,
                                          io_queue_size=int(cfg.get("queue_depth", 256)))
        try:
            core.initialize(self._step, timeout=float(cfg.get("init_timeout_s", 10.0)))
        except NvmeError as e:
            raise DeviceSetupError(f"NVMe device {device!r} did not initialise: {e}") from e
        if core.lba_size != BLOCK_SIZE:
            raise DeviceSetupError(f"namespace LBA size is {core.lba_size}, BDev needs {BLOCK_SIZE}")
        self.nblocks = core.nblocks
        self.sync_done: dict[int, int] = {}  # tag -> status of synchronous commands
        self.ops = RecordOps(ctx.heap, BlockReq)
        self.done = EMPTY  # offsets of batch requests completed, not yet collected
        self.accepted = None  # (offsets, write): taken from a client, not yet queued
        self.next_tag = 1
        self.submitted = self.completed = self.errors = 0
        self.inflight_batch = 0  # batch requests accepted and not yet collected
        ctx.export(ctx.name, self, BDev)
        ctx.export(ctx.name, self, NvmeBDev)

    # -- plumbing ------------------------------------------------------------------
    def _step(self) -> None:
        """Init-time wait: let the device run, sleep up to a millisecond."""
        self.dev_waker.wake()
        self.rt.wait_until(lambda: False, 0.0005, spin_ns=50_000)

    def _kick(self) -> None:
        if self.core.ring():
            self.dev_waker.wake()

    def _reap(self) -> bool:
        """Move new completions to `sync_done` / `done`; True if there were any.

        A batch request's status is written into it here, so `done` holds
        finished requests that only wait for room in a client's collect deque."""
        others, offs, status = self.core.reap_arrays()
        for tag, st in others:
            self.sync_done[tag] = st
        if offs.size:
            self.ops.set(offs, "status", status)
            self.errors += int(np.count_nonzero(status))
            self.done = offs if not self.done.size else np.concatenate([self.done, offs])
            return True
        return bool(others)

    def _sync(self, what: str, submit) -> None:
        """Run one command synchronously; BlockError with the NVMe status on failure."""
        tag = self.next_tag
        self.next_tag = tag + 1
        if not self.core.space():
            # the batch path filled the queue: wait for a slot
            deadline = time.monotonic() + SYNC_TIMEOUT_S
            while not self.rt.wait_until(lambda: self._reap() or self.core.space() > 0, WAIT_SLICE_S):
                if time.monotonic() > deadline:
                    raise BlockError(f"{what}: no free submission slot within {SYNC_TIMEOUT_S}s")
        submit(tag)
        self._kick()
        done = self.sync_done
        ready = lambda: (self._reap() or True) and tag in done  # noqa: E731
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        # Short slices: a lost interrupt costs a slice, not the runtime's 100 ms idle poll.
        while not self.rt.wait_until(ready, WAIT_SLICE_S):
            if time.monotonic() > deadline:
                self._check_fatal()
                raise BlockError(f"{what}: the controller did not complete it within {SYNC_TIMEOUT_S}s")
        st = done.pop(tag)
        if st:
            raise BlockError(f"{what} failed: {S.status_str(st)}")

    def _check_fatal(self) -> None:
        """A controller in fatal status needs a reset; dying gets us restarted."""
        if self.core.fatal():
            raise NvmeError("controller fatal status (CSTS.CFS); the driver restarts to reset it")

    def _check_block(self, block: int) -> None:
        if not 0 <= block < self.nblocks:
            raise BlockError(f"block {block} is outside the device (0..{self.nblocks - 1})")

    # -- BDev -----------------------------------------------------------------------
    def read(self, block: int, buf):
        try:
            self._check_block(block)
            self._sync(f"read of block {block}", lambda t: self.core.submit_read(block, 1, buf.offset, t))
        except BlockError:
            buf.drop()
            raise
        return buf

    def write(self, block: int, buf) -> None:
        self._check_block(block)
        off = buf.offset
        buf.buf  # validates the borrow before the device reads the memory
        self._sync(f"write of block {block}", lambda t: self.core.submit_write(block, 1, off, t))

    def flush(self) -> None:
        self._sync("flush", self.core.submit_flush)

    def info(self) -> tuple[int, int]:
        return BLOCK_SIZE, self.nblocks

    # -- NvmeBDev ---------------------------------------------------------------------
    def _outstanding(self) -> int:
        return self.inflight_batch

    def _abandon(self) -> None:
        """Free the requests of a client that went away (waiting for the device to
        finish those it has): nothing of them may reach the next client."""
        if self.accepted is not None:
            offs, _write = self.accepted
            self.accepted = None
            self.ops.free(offs)
            self.inflight_batch -= offs.size
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        while self.inflight_batch > self.done.size:
            if not self.rt.wait_until(self._reap, WAIT_SLICE_S) and time.monotonic() > deadline:
                self._check_fatal()
                raise BlockError(f"{self.ctx.name}: the requests of a departed client did not complete "
                                 f"within {SYNC_TIMEOUT_S}s")
        self.ops.free(self.done)
        self.inflight_batch -= self.done.size
        self.done = EMPTY

    @ownership_errors_as(BlockError)
    def submit_and_poll(self, submit, collect, write: bool):
        core = self.core
        self._claim()
        self._issue_accepted()
        offs = self.ops.take(submit, core.space())
        idle = not self.inflight_batch
        if offs.size:
            self.submitted += offs.size
            self.inflight_batch += offs.size
            if idle and offs.size == 1:
                self._issue(offs, write)
            else:
                # accepted now, handed to the device once the caller has its answer:
                # the client prepares its next batch meanwhile
                self.accepted = (offs, write)
                self.rt.defer(self._issue_accepted)
        if self._reap() or self.done.size:
            self._collect(collect)
        elif idle and offs.size == 1:
            # Queue depth 1 (one request, nothing else outstanding): the caller's next
            # call could only be a poll, so wait for the completion here (asleep,
            # leaving the CPU to the device).  A bigger batch returns at once: its
            # client can prepare the next batch while the device works.
            if self.rt.wait_until(self._reap, POLL_WAIT_S):
                self._collect(collect)
        return int(offs.size), submit, collect

    @ownership_errors_as(BlockError)
    def poll(self, collect):
        self._claim()
        self._issue_accepted()
        k = self._collect(collect) if (self._reap() or self.done.size) else 0
        if not k and self.inflight_batch:
            if self.rt.wait_until(self._reap, POLL_WAIT_S):
                k = self._collect(collect)
            else:
                self._check_fatal()
        return k, collect

    def _issue(self, offs, write: bool) -> None:
        self.core.submit_batch(S.NVM_WRITE if write else S.NVM_READ, self.ops.get(offs, "block"), offs)
        self._kick()

    def _issue_accepted(self) -> None:
        if self.accepted is not None:
            offs, write = self.accepted
            self.accepted = None
            self._issue(offs, write)

    def _collect(self, collect) -> int:
        # the driver took these requests itself (checked then) and still owns them
        k = self.ops.put_records(collect, *self.ops.records_of(self.done))
        self.done = self.done[k:]
        self.completed += k
        self.inflight_batch -= k
        return k

    def stats(self) -> tuple[int, int, int, int]:
        return self.submitted, self.completed, self.errors, self.inflight_batch

    def shutdown(self) -> None:
        """Clean stop: tell the controller (it flushes), as an OS does at power-off.

        Best effort and brief: at instance shutdown the supervisor stops the device
        process at the same time, and nobody may be left to answer."""
        try:
            self.core.shutdown(self._step, timeout=SHUTDOWN_WAIT_S)
        except NvmeError:
            pass
