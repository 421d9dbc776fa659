"""The client side of `NvmeBDev`: a pool of request buffers and the two deques.

`NvmeBDev.submit_and_poll` moves a deque of requests into the driver and gets back
the ones it could not queue plus a deque of completed ones, so a client has to keep
a pool of `BlockReq` objects and recycle what comes back.  `BatchQueue` does that
bookkeeping for tests and benchmarks.  Requests are named by their heap offsets
(shared_heap.batch.RecordOps moves whole batches in and out of the deques with
numpy; one handle object per request would cost more than the I/O):

    q = BatchQueue(client.heap, client.lookup("nvme0", NvmeBDev), depth=32)
    q.submit(write=True, items=[(block, data), ...])   # one call, one doorbell
    for req in q.wait(): ...                            # offsets of completed requests (a list)
        q.block_of(req), q.status_of(req), q.data_of(req)
    q.release(req)                                      # back to the pool

    q.submit_blocks(write, np.array(blocks))            # the vector form: the data
                                                        # is what the buffers hold

If the driver crashes (DomainCrashed from a call), the requests and deques that
were inside it are gone (the supervisor reclaims them); `reset()` makes new ones.
"""

from __future__ import annotations

import time

import numpy as np

from redleaf.drivers.bdev import BLOCK_SIZE, BlockError, BlockReq
from redleaf.shared_heap.batch import EMPTY, RecordOps


WAIT_TIMEOUT_S = 30.0  # as long as NvmeBDev's own call deadline


class BatchQueue:
    def __init__(self, heap, dev, depth: int = 32):
        self.heap = heap
        self.dev = dev
        self.depth = depth
        self.ops = RecordOps(heap, BlockReq)
        self.mem = heap.mem
        self.pool = EMPTY  # offsets of requests owned here, ready for use
        self.inflight = 0
        self.sub = self.col = None
        self.reset()

    def reset(self) -> None:
        """Fresh deques and a full pool (after the driver died holding the old ones)."""
        for d in (self.sub, self.col):
            if d is not None and d.alive:  # the failed call never took them
                d.drop()
        self.sub = self.ops.deque(self.depth)
        self.col = self.ops.deque(self.depth)
        owned = self._owned(self.pool)
        self.pool = np.concatenate([owned, self.ops.alloc(self.depth - owned.size)])
        self.inflight = 0

    def _owned(self, offs: np.ndarray) -> np.ndarray:
        """The offsets in `offs` still owned here (a crash takes the others along)."""
        return offs[self.ops.owned(offs)]

    def close(self) -> None:
        for h in (self.sub, self.col):
            if h is not None and h.alive:
                h.drop()
        self.ops.free(self._owned(self.pool))
        self.pool = EMPTY

    # -- requests ---------------------------------------------------------------------
    @property
    def free(self) -> int:
        """Requests in the pool."""
        return int(self.pool.size)

    def release(self, reqs) -> None:
        """Give completed requests (an offset or an array of them) back to the pool."""
        self.pool = np.concatenate([self.pool, np.atleast_1d(np.asarray(reqs, dtype=np.int64))])

    def block_of(self, r) -> int:
        return int(self.ops.get(np.int64(r), "block"))

    def status_of(self, r) -> int:
        return int(self.ops.get(np.int64(r), "status"))

    def statuses(self, reqs) -> np.ndarray:
        return self.ops.get(np.asarray(reqs, dtype=np.int64), "status")

    def data_of(self, r) -> memoryview:
        r = int(r)
        return self.mem[r:r + BLOCK_SIZE]

    # -- calls ------------------------------------------------------------------------
    def submit(self, write: bool, items) -> list[int]:
        """Queue `items` ((block, data) for writes, (block, None) for reads).  See
        `submit_blocks`; here the data (4 KiB each) is copied into the requests."""
        if not items:
            return []
        blocks = np.array([b for b, _d in items], dtype=np.uint64)
        offs = self._take(len(items))
        mem = self.mem
        for off, (_b, data) in zip(offs.tolist(), items):
            if data is not None:
                mem[off:off + BLOCK_SIZE] = data
        return self._submit(write, offs, blocks)

    def submit_blocks(self, write: bool, blocks: np.ndarray) -> list[int]:
        """Queue one request per block in one call (repeated while the driver's
        queue is full); a write writes what the request's buffer holds.  Returns
        the offsets of the requests that completed meanwhile."""
        return self._submit(write, self._take(len(blocks)), np.asarray(blocks, dtype=np.uint64))

    def _take(self, n: int) -> np.ndarray:
        if n > self.pool.size:
            raise ValueError(f"{n} requests asked for, {self.pool.size} in the pool (release some)")
        offs, self.pool = self.pool[:n], self.pool[n:]
        return offs

    def _submit(self, write: bool, offs: np.ndarray, blocks: np.ndarray) -> list[int]:
        ops = self.ops
        ops.set(offs, "block", blocks)
        ops.set(offs, "status", 0)
        done: list[int] = []
        todo = offs
        while True:
            k = ops.put(self.sub, todo)
            todo = todo[k:]
            n, self.sub, self.col = self.dev.submit_and_poll(self.sub, self.col, write)
            self.inflight += n
            done += self._drain()
            if not todo.size and not ops.length(self.sub):
                return done
            if not n:  # the driver's queue is full: wait for room
                done += self.wait_some()

    def poll(self) -> list[int]:
        _k, self.col = self.dev.poll(self.col)
        return self._drain()

    def wait_some(self, timeout_s: float = WAIT_TIMEOUT_S) -> list[int]:
        """At least one completion if anything is in flight (polls until then)."""
        deadline = time.monotonic() + timeout_s
        out: list[int] = []
        while self.inflight and not out:
            out = self.poll()
            self._check_deadline(deadline, timeout_s, "any")
        return out

    def wait(self, timeout_s: float = WAIT_TIMEOUT_S) -> list[int]:
        """Every request in flight, completed; BlockError after `timeout_s` without that
        (a device that stopped answering must not block its client for ever)."""
        deadline = time.monotonic() + timeout_s
        out: list[int] = []
        while self.inflight:
            out += self.poll()
            self._check_deadline(deadline, timeout_s, "all")
        return out

    def _check_deadline(self, deadline: float, timeout_s: float, what: str) -> None:
        if self.inflight and time.monotonic() > deadline:
            raise BlockError(f"{self.inflight} request(s) still in flight after {timeout_s:.0f}s waiting for "
                             f"{what} to complete; the device or its driver is not answering "
                             f"(`redleaf status`), reset() the queue to start again")

    def _drain(self) -> list[int]:
        out = self.ops.take(self.col)
        self.inflight -= out.size
        if self.inflight < 0:
            raise RuntimeError(f"{-self.inflight} more completions than requests in flight")
        return out.tolist()
