"""Fuzz target `nvme-regs`: a misbehaving driver's register, doorbell and command writes
into the emulated NVMe controller (drivers/nvme/controller.py), in process.

Each input is a fresh controller over an in-memory disk, brought up by the real driver
core (drivers/nvme/driver_core.py), then 1..MAX_ACTIONS hostile actions, each one of:
- a 32-bit write of a random value at a random 4-byte offset of BAR0 (CC, AQA, ASQ, ACQ,
  NSSR, INTMS/INTMC, the doorbell window, the emulation words, reserved space);
- a write of random bytes at an unaligned offset (a torn or partial register write);
- a doorbell of the admin or I/O queues, or of a queue that does not exist, with a
  random value or one just past the queue;
- an I/O command in the driver's submission queue, rung properly, with hostile fields:
  opcodes, namespaces, fused flags, LBAs past the end, lengths past MDTS, PRPs that are
  unaligned, outside the DMA window, or point a PRP list at garbage;
- an admin command likewise: create and delete queues with random ids, sizes, base
  addresses and CQ bindings, Identify / Get Log Page / Set Features into random
  buffers, Abort, Asynchronous Event Requests;
- `process()`.
Then: `process()` never raises, the controller counts no internal error, no byte of
the guard areas outside its DMA window changed, and a fresh driver core brings the
device back and reads a block.  The input was *refused* if the controller reported it
(its error counter, CSTS.CFS, or an error status in a completion), else *accepted*.

May call: drivers.nvme (regs, spec, controller, driver_core, store).
"""

from __future__ import annotations

import random

from redleaf.drivers.nvme import regs as R
from redleaf.drivers.nvme import spec as S
from redleaf.drivers.nvme.controller import NvmeController
from redleaf.drivers.nvme.driver_core import NvmeDriverCore
from redleaf.drivers.nvme.store import MemoryBlockStore

from .tally import Tally

MAX_ACTIONS = 30
DMA_SIZE = 2 << 20
DMA_BASE = 0x10000
DMA_LIMIT = DMA_SIZE - 0x10000
GUARD = 0xA5
DISK_BLOCKS = 256


class Bump:
    """The driver's dma_alloc over a window of the DMA buffer."""

    def __init__(self, dma: memoryview, start: int, end: int):
        self.dma, self.pos, self.end = dma, start, end

    def __call__(self, nbytes: int, align: int):
        off = -(-self.pos // align) * align
        if off + nbytes > self.end:
            raise MemoryError("DMA arena exhausted")
        self.pos = off + nbytes
        return off, self.dma[off:off + nbytes]


class Rig:
    def __init__(self):
        self.bar_buf = bytearray(R.BAR_SIZE)
        self.dma_buf = bytearray([GUARD]) * DMA_SIZE
        self.dma_buf[DMA_BASE:DMA_LIMIT] = bytes(DMA_LIMIT - DMA_BASE)
        self.dma = memoryview(self.dma_buf)
        self.store = MemoryBlockStore(DISK_BLOCKS << 12)
        self.ctrl = NvmeController(self.bar_buf, self.dma, DMA_BASE, DMA_LIMIT, self.store, max_queues=4)
        self.alloc = Bump(self.dma, DMA_BASE, DMA_BASE + (1 << 20))
        self.bufs = Bump(self.dma, DMA_BASE + (1 << 20), DMA_LIMIT)
        self.bar = R.Bar(self.bar_buf)
        self.drv = NvmeDriverCore(self.bar_buf, self.alloc, io_queue_size=16)
        self.drv.initialize(self.ctrl.process)

    def guards_intact(self) -> bool:
        g = bytes([GUARD])
        return self.dma_buf[:DMA_BASE] == g * DMA_BASE and self.dma_buf[DMA_LIMIT:] == g * (DMA_SIZE - DMA_LIMIT)


def _addr(rng: random.Random) -> int:
    return rng.choice([0, 1, 4, DMA_BASE - 4096, DMA_BASE, DMA_BASE + 2, DMA_BASE + (1 << 20),
                       DMA_LIMIT - 4096, DMA_LIMIT - 8, DMA_LIMIT, DMA_SIZE, 2 ** 63, 2 ** 64 - 4096,
                       rng.randrange(2 ** 64), rng.randrange(DMA_SIZE) & ~3, rng.randrange(DMA_SIZE)])


def _u32(rng: random.Random) -> int:
    return rng.choice([0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF, rng.randrange(2 ** 32), rng.randrange(256)])


def _io_command(rng: random.Random, cid: int) -> S.Command:
    opc = rng.choice([S.NVM_READ, S.NVM_WRITE, S.NVM_FLUSH, S.NVM_WRITE_ZEROES, rng.randrange(256)])
    slba = rng.choice([0, DISK_BLOCKS - 1, DISK_BLOCKS, 2 ** 64 - 1, rng.randrange(2 ** 64)])
    return S.Command(opc, cid, nsid=rng.choice([1, 1, 1, 0, 2, 0xFFFFFFFF]), prp1=_addr(rng), prp2=_addr(rng),
                     cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32,
                     cdw12=rng.choice([0, 1, 7, 0xFFFF, rng.randrange(2 ** 32)]),
                     flags=rng.choice([0, 0, 0, 1, 0x40, 0xFF]))


def _admin_command(rng: random.Random, cid: int) -> S.Command:
    opc = rng.choice([S.ADMIN_CREATE_CQ, S.ADMIN_CREATE_SQ, S.ADMIN_DELETE_CQ, S.ADMIN_DELETE_SQ,
                      S.ADMIN_IDENTIFY, S.ADMIN_GET_LOG_PAGE, S.ADMIN_SET_FEATURES, S.ADMIN_GET_FEATURES,
                      S.ADMIN_ABORT, S.ADMIN_ASYNC_EVENT, rng.randrange(256)])
    qid = rng.choice([0, 1, 2, 3, 4, 5, 0xFFFF])
    size = rng.choice([0, 1, 2, 15, 1023, 0xFFFF])
    return S.Command(opc, cid, nsid=rng.choice([0, 1, 2, 0xFFFFFFFF]), prp1=_addr(rng), prp2=_addr(rng),
                     cdw10=rng.choice([qid | size << 16, _u32(rng), rng.randrange(4)]),
                     cdw11=rng.choice([1, 3, 1 | qid << 16, _u32(rng)]), cdw12=_u32(rng),
                     flags=rng.choice([0, 0, 0, 1]))


def act(rng: random.Random, rig: Rig) -> str:
    d, u = rig.drv, rig.bar.u32
    k = rng.randrange(7)
    if k == 0:
        off = rng.choice([R.CC, R.AQA, R.ASQ, R.ASQ + 4, R.ACQ, R.ACQ + 4, R.NSSR, R.INTMS, R.INTMC,
                          R.EMU_PCICMD, R.EMU_QREQ, R.CSTS, R.CAP, R.EMU_ERRCNT, rng.randrange(R.BAR_SIZE // 4) * 4])
        rig.bar.write32(off, _u32(rng) if off != R.NSSR or rng.random() < 0.5 else R.NSSR_MAGIC)
        return f"reg {off:#x}"
    if k == 1:
        off = rng.randrange(R.BAR_SIZE - 8)
        n = rng.randint(1, 7)
        rig.bar_buf[off:off + n] = rng.randbytes(n)
        return f"bytes at {off:#x}"
    if k == 2:
        qid = rng.choice([0, 1, 1, 2, 4, 5, 200, 511])
        off = (R.sq_tail_doorbell if rng.random() < 0.5 else R.cq_head_doorbell)(qid, 0)
        if off < R.DOORBELL_END:
            rig.bar.write32(off, rng.choice([0, 1, d.io_queue_size, d.io_queue_size + 1, _u32(rng)]))
        return f"doorbell {off:#x}"
    if k in (3, 4):
        admin = k == 4
        sq, size = (d._asq, d._aq_size) if admin else (d._sq, d.io_queue_size)
        tail = d._asq_tail if admin else d._sq_tail
        cid = rng.randrange(65536)
        S.encode_sqe(sq, tail << 6, (_admin_command if admin else _io_command)(rng, cid))
        tail = (tail + 1) % size
        if admin:
            d._asq_tail = tail
            u[d._asq_db] = tail
        else:
            d._sq_tail = tail
            u[d._sq_db] = tail
        return "admin command" if admin else "io command"
    if k == 5:
        u[d._cq_db if rng.random() < 0.5 else d._acq_db] = rng.randrange(d.io_queue_size + 2)
        return "cq head"
    rig.ctrl.process()
    return "process"


def one(rng: random.Random, tally: Tally) -> None:
    rig = Rig()
    errors0 = rig.ctrl.stats["errors"]
    steps = []
    try:
        for _ in range(rng.randint(1, MAX_ACTIONS)):
            steps.append(act(rng, rig))
            if rng.random() < 0.5:
                rig.ctrl.process()
        for _ in range(3):
            rig.ctrl.process()
    except Exception as e:
        tally.crash(f"process() raised {type(e).__name__}: {e} after {steps}")
        return
    c = rig.ctrl
    if c.stats["internal_errors"]:
        tally.crash(f"internal error in the model: {c.last_error} after {steps}")
        return
    if not rig.guards_intact():
        tally.crash(f"DMA outside the window [{DMA_BASE:#x}, {DMA_LIMIT:#x}) after {steps}")
        return
    reported = c.stats["errors"] > errors0 or c.fatal or _error_completions(rig)
    why = c.last_error if c.stats["errors"] > errors0 else ("CSTS.CFS" if c.fatal else "an error status")
    # whatever the old driver did, a new one brings the device back
    try:
        new = NvmeDriverCore(rig.bar_buf, Bump(rig.dma, DMA_BASE + (1 << 19), DMA_BASE + (1 << 20)),
                             io_queue_size=8)
        new.initialize(c.process)
        off, _ = rig.bufs(4096, 4096)
        new.submit_read(0, 1, off, "ok")
        got = new.wait_all(c.process)
    except Exception as e:
        tally.crash(f"a fresh driver could not recover the device: {type(e).__name__}: {e} after {steps}")
        return
    if got != [("ok", 0)]:
        tally.crash(f"a fresh driver's read returned {got} after {steps}")
    elif reported:
        tally.refuse(f"device error: {why}"[:300], "device error")
    else:
        tally.accept("no error")


def _error_completions(rig: Rig) -> bool:
    """Any completion with a non-zero status in the driver's admin or I/O CQ."""
    import numpy as np

    d = rig.drv
    for mem, n in ((d._acq, d._aq_size), (d._cq, d.io_queue_size)):
        dw3 = np.frombuffer(mem, dtype="<u4", count=n * 4)[3::4]
        if ((dw3 >> 17) != 0).any():
            return True
    return False


def run(count: int, seed: int) -> dict:
    tally = Tally("nvme-regs", seed)
    rng = random.Random(seed)
    for _ in range(count):
        one(rng, tally)
    return tally.result()
