"""BDevDisk: rv6's block-device protocol (disk.py) over a driver domain's `BDev` and,
where it offers it, `NvmeBDev`, so the file system runs on a driver domain (the NVMe
driver, through its shadow) as on a file.

Owns: the request pool of its batch queue (or, on a `BDev`-only device, one block buffer
for reads and one for writes) in the exchange heap, and the mapping of the driver's
`BlockError` to `DiskError` (EIO). Calls: the `BDev`/`NvmeBDev` proxies it is given
(redleaf.drivers.bdev, redleaf.drivers.nvme.client's BatchQueue) and the heap's `alloc`;
nothing of the file system but its errors and format constants.

Reads and writes go as batches when the device offers `NvmeBDev`: `read_blocks` (a
cache miss of a long read, readahead) and `write_blocks` (a log commit, an install) are
one `submit_and_poll` per BATCH blocks, one doorbell each, instead of a call per block;
a single block is a batch of one. `NvmeBDev` serves one client at a time: while another
client has requests in the driver, a batch is retried for a while before the fs sees
EIO. `flush` is the device's flush (an NVMe Flush through `BDev`: what was written
before it is on the medium), so the log's commit, and with it fsync, means durable.
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np

from redleaf.domains.errors import RpcError
from redleaf.drivers.bdev import BLOCK_SIZE, Block, BlockError

from .disk import ZERO, _Checked
from .errors import DiskError
from .format import BSIZE

assert BLOCK_SIZE == BSIZE, "rv6 blocks and the driver's blocks must be the same size"

#: requests in one submit_and_poll (the queue's depth)
BATCH = 32
#: how long a batch waits for another NvmeBDev client to collect its requests
CLAIM_WAIT_S = 5.0


class BDevDisk(_Checked):
    """A `BlockDevice` over a `BDev` proxy and, if given, an `NvmeBDev` proxy of the same
    device; `heap` is the calling domain's heap."""

    def __init__(self, heap, bdev, nvme=None):
        self.heap = heap
        self.bdev = bdev
        bsize, nblocks = bdev.info()
        if bsize != BSIZE:
            raise DiskError(f"the device has {bsize}-byte blocks; rv6 needs {BSIZE}")
        self.nblocks = int(nblocks)
        self.q = None
        self._rbuf = self._wbuf = None
        if nvme is not None:
            from redleaf.drivers.nvme.client import BatchQueue

            self.q = BatchQueue(heap, nvme, depth=BATCH)
        else:
            self._rbuf = heap.alloc(Block)
            self._wbuf = heap.alloc(Block)
        self.reads = self.writes = self.flushes = self.batches = 0

    # --- the batched path (NvmeBDev) ----------------------------------------------------
    def _batch(self, write: bool, blocks: list[int], fill=None) -> list[int]:
        """Submit one batch, wait for all of it; the completed requests' offsets. A busy
        device (another client's requests in the driver) is retried until CLAIM_WAIT_S."""
        q = self.q
        deadline = time.monotonic() + CLAIM_WAIT_S
        while True:
            try:
                if write:
                    done = q.submit(True, fill)
                else:
                    done = q.submit_blocks(False, np.asarray(blocks, np.uint64))
                return done + q.wait()
            except BlockError as e:
                q.reset()
                if "one NvmeBDev client at a time" not in str(e) or time.monotonic() > deadline:
                    raise DiskError(f"{'writing' if write else 'reading'} blocks {blocks[0]}..: {e}") from e
                time.sleep(0.001)
            except RpcError:
                q.reset()       # the requests went down with the callee
                raise

    def _settle(self, done: list[int], write: bool) -> None:
        bad = [r for r in done if self.q.status_of(r)]
        if bad:
            st, b = self.q.status_of(bad[0]), self.q.block_of(bad[0])
            self.q.release(done)
            raise DiskError(f"{'writing' if write else 'reading'} block {b}: the device answered status {st:#x}")

    def read_blocks(self, bnos: list[int], into, rows: list[int]) -> None:
        if self.q is None:
            return super().read_blocks(bnos, into, rows)
        for bno in bnos:
            self._check(bno)
        row_of = dict(zip(bnos, rows))
        mem = self.q.mem
        for k in range(0, len(bnos), BATCH):
            part = bnos[k:k + BATCH]
            done = self._batch(False, part)
            self._settle(done, False)
            for r in done:
                into[row_of[self.q.block_of(r)]] = np.frombuffer(mem, np.uint8, BSIZE, r)
            self.q.release(done)
            self.reads += len(part)
            self.batches += 1

    def read_block(self, bno: int) -> bytes:
        self._check(bno)
        if self.q is not None:
            row = np.empty((1, BSIZE), np.uint8)
            self.read_blocks([bno], row, [0])
            return row.tobytes()
        buf, self._rbuf = self._rbuf, None
        if buf is None:     # a failed read gave its buffer up (a declared error consumes moves)
            buf = self.heap.alloc(Block)
        try:
            buf = self.bdev.read(bno, buf)
        except BlockError as e:
            raise DiskError(f"reading block {bno}: {e}") from e
        self._rbuf = buf
        self.reads += 1
        return bytes(buf.np["data"])

    def write_blocks(self, items: Iterable[tuple[int, bytes]]) -> None:
        items = list(items)
        for bno, data in items:
            self._check(bno, data)
        if self.q is None:
            for bno, data in items:
                self._wbuf.np["data"][:] = np.frombuffer(data, np.uint8)
                try:
                    self.bdev.write(bno, self._wbuf)    # borrowed: the buffer stays ours
                except BlockError as e:
                    raise DiskError(f"writing block {bno}: {e}") from e
                self.writes += 1
            return
        for k in range(0, len(items), BATCH):
            part = items[k:k + BATCH]
            done = self._batch(True, [b for b, _ in part], part)
            self._settle(done, True)
            self.q.release(done)
            self.writes += len(part)
            self.batches += 1

    def write_block(self, bno: int, data: bytes) -> None:
        self.write_blocks([(bno, data)])

    def flush(self) -> None:
        try:
            self.bdev.flush()
        except BlockError as e:
            raise DiskError(f"flush: {e}") from e
        self.flushes += 1

    def looks_blank(self, probe_blocks: int = 64) -> bool:
        """True when the first `probe_blocks` blocks and the last one read as zeros: where
        every common format (rv6, ext*, FAT, GPT and its backup, MBR) keeps its
        signature, so a foreign image is never taken for a blank one."""
        probe = list(range(min(probe_blocks, self.nblocks)))
        if self.nblocks:
            probe.append(self.nblocks - 1)
        return all(self.read_block(b) == ZERO for b in probe)

    def close(self) -> None:
        for b in (self._rbuf, self._wbuf):
            if b is not None and b.alive:
                b.drop()
        self._rbuf = self._wbuf = None
        if self.q is not None:
            self.q.close()
