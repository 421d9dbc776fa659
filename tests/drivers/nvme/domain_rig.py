"""Shared pieces of the NVMe integration tests: a reference copy of the disk and
a random workload that checks every read against it."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from redleaf.drivers.bdev import BLOCK_SIZE, Block, BlockError
from redleaf.drivers.nvme.client import BatchQueue

_HDR = struct.Struct("<QQ")  # block number, write serial: a misdirected write shows


class Reference:
    """What the disk must contain: every write the driver acknowledged."""

    def __init__(self, nblocks: int, seed: int = 1):
        self.nblocks = nblocks
        self.data = np.zeros((nblocks, BLOCK_SIZE), dtype=np.uint8)
        self.rng = np.random.default_rng(seed)
        self.serial = 0
        self.verified = 0

    def make(self, block: int) -> bytes:
        self.serial += 1
        b = bytearray(self.rng.bytes(BLOCK_SIZE))
        _HDR.pack_into(b, 0, block, self.serial)
        return bytes(b)

    def ack(self, block: int, data) -> None:
        self.data[block] = np.frombuffer(data, dtype=np.uint8)

    def check(self, block: int, data) -> None:
        got = zlib.crc32(data)
        want = zlib.crc32(self.data[block])
        if got != want:
            hb, hs = _HDR.unpack_from(bytes(data[:16]))
            raise AssertionError(f"block {block}: checksum {got:#x} != reference {want:#x} "
                                 f"(block header says block {hb}, serial {hs})")
        self.verified += 1

    def check_image(self, path: str) -> None:
        with open(path, "rb") as f:
            img = np.frombuffer(f.read(self.nblocks * BLOCK_SIZE), dtype=np.uint8)
        bad = np.flatnonzero((img.reshape(self.nblocks, BLOCK_SIZE) != self.data).any(axis=1))
        assert not len(bad), f"{len(bad)} blocks of the image differ from the reference, first {bad[:8].tolist()}"


def random_io(heap, bdev, nvme, ref: Reference, ops: int, batch: int = 32, seed: int = 2,
              queue: BatchQueue | None = None) -> dict:
    """`ops` random 4 KiB reads and writes: batches through NvmeBDev, some single
    ones through BDev, flushes now and then.  One batch is in flight at a time, so
    no read races a write to the same block and every read has one right answer."""
    rng = np.random.default_rng(seed)
    q = queue or BatchQueue(heap, nvme, depth=batch)
    buf = heap.alloc(Block)
    counts = {"batch_reads": 0, "batch_writes": 0, "reads": 0, "writes": 0, "flushes": 0}
    done = 0
    try:
        while done < ops:
            kind = rng.random()
            if kind < 0.9:
                n = int(rng.integers(1, batch + 1))
                blocks = rng.choice(ref.nblocks, size=min(n, ops - done), replace=False).tolist()
                write = kind < 0.45
                items = [(b, ref.make(b) if write else None) for b in blocks]
                comp = q.submit(write, items)
                comp += q.wait()
                by_block = dict(items)
                got = sorted(q.block_of(r) for r in comp)
                assert got == sorted(by_block), f"completed {got}, submitted {sorted(by_block)}"
                for r in comp:
                    blk, st = q.block_of(r), q.status_of(r)
                    assert st == 0, f"block {blk}: NVMe status {st:#x}"
                    if write:
                        ref.ack(blk, by_block[blk])
                    else:
                        ref.check(blk, q.data_of(r))
                    q.release(r)
                counts["batch_writes" if write else "batch_reads"] += len(items)
                done += len(items)
            elif kind < 0.95:
                blk = int(rng.integers(ref.nblocks))
                buf = bdev.read(blk, buf)
                ref.check(blk, buf.buf)
                counts["reads"] += 1
                done += 1
            elif kind < 0.995:
                blk = int(rng.integers(ref.nblocks))
                data = ref.make(blk)
                buf.buf[:] = data
                bdev.write(blk, buf)
                ref.ack(blk, data)
                counts["writes"] += 1
                done += 1
            else:
                bdev.flush()
                counts["flushes"] += 1
    finally:
        if queue is None:
            q.close()
        if buf.alive:
            buf.drop()
    return counts


__all__ = ["Reference", "random_io", "BlockError"]
