"""The client side of `NvmeBDev`: a pool of request buffers and the two deques.

`NvmeBDev.submit_and_poll` moves a deque of requests into the driver and gets back
the ones it could not queue plus a deque of completed ones, so a client has to keep
a pool of `BlockReq` objects and recycle what comes back.  `BatchQueue` does that
bookkeeping for tests and benchmarks:

    q = BatchQueue(client.heap, client.lookup("nvme0", NvmeBDev), depth=32)
    q.submit(write=True, items=[(block, data), ...])   # one call, one doorbell
    for req in q.wait(): ...                            # completed RRef[BlockReq]s
    q.release(req)

If the driver crashes (DomainCrashed from a call), the requests and deques that
were inside it are gone (the supervisor reclaims them); `reset()` makes new ones.
"""

from __future__ import annotations

import struct

from drivers.bdev import BLOCK_SIZE, BlockReq

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
OFF_BLOCK = BlockReq.dtype.fields["block"][1]
OFF_STATUS = BlockReq.dtype.fields["status"][1]


class BatchQueue:
    def __init__(self, heap, dev, depth: int = 32):
        self.heap = heap
        self.dev = dev
        self.depth = depth
        self.mem = heap.mem
        self.free: list = []
        self.inflight = 0
        self.reset()

    def reset(self) -> None:
        """Fresh deques and a full pool (after the driver died holding the old ones)."""
        for d in (getattr(self, "sub", None), getattr(self, "col", None)):
            if d is not None and d.alive:  # the failed call never took them
                d.drop()
        self.sub = self.heap.alloc_deque(BlockReq, self.depth)
        self.col = self.heap.alloc_deque(BlockReq, self.depth)
        while len(self.free) < self.depth:
            self.free.append(self.heap.alloc(BlockReq))
        self.inflight = 0

    def close(self) -> None:
        for h in [self.sub, self.col, *self.free]:
            if h.alive:
                h.drop()
        self.free = []

    # -- requests ---------------------------------------------------------------------
    def take(self, block: int, data=None):
        """A request for `block` from the pool, with `data` (4 KiB) copied in if given."""
        r = self.free.pop()
        off = r.offset
        r.buf  # ownership check once; the fields are then written through the mapping
        _U64.pack_into(self.mem, off + OFF_BLOCK, block)
        _U32.pack_into(self.mem, off + OFF_STATUS, 0)
        if data is not None:
            self.mem[off:off + BLOCK_SIZE] = data
        return r

    def release(self, r) -> None:
        self.free.append(r)

    @staticmethod
    def block_of(r) -> int:
        return _U64.unpack_from(r.heap.mem, r.offset + OFF_BLOCK)[0]

    @staticmethod
    def status_of(r) -> int:
        return _U32.unpack_from(r.heap.mem, r.offset + OFF_STATUS)[0]

    @staticmethod
    def data_of(r) -> memoryview:
        return r.buf[:BLOCK_SIZE]

    # -- calls ------------------------------------------------------------------------
    def submit(self, write: bool, items) -> list:
        """Queue `items` ((block, data) for writes, (block, None) for reads) in one call.

        Returns the requests that completed meanwhile.  Every item is queued (the
        call is repeated while the driver's queue is full)."""
        done: list = []
        for block, data in items:
            self.sub.push_back(self.take(block, data))
        while True:
            n, self.sub, self.col = self.dev.submit_and_poll(self.sub, self.col, write)
            self.inflight += n
            done.extend(self._drain())
            if not len(self.sub):
                break
            if not n:
                done.extend(self.wait_some())
        return done

    def poll(self) -> list:
        k, self.col = self.dev.poll(self.col)
        return self._drain()

    def wait_some(self) -> list:
        """At least one completion if anything is in flight (polls until then)."""
        out = []
        while self.inflight and not out:
            out = self.poll()
        return out

    def wait(self) -> list:
        """Every request in flight, completed."""
        out = []
        while self.inflight:
            out.extend(self.poll())
        return out

    def _drain(self) -> list:
        out = list(self.col)
        self.inflight -= len(out)
        if self.inflight < 0:
            raise RuntimeError(f"{-self.inflight} more completions than requests in flight")
        return out
