"""Fuzz target `ixgbe-regs`: a misbehaving driver's register, doorbell and descriptor
writes into the emulated 82599 (drivers/ixgbe/nic.py), in process.

Each input is a fresh NIC on one end of an in-memory cable (wire.pair), brought up by
the real driver core (drivers/ixgbe/driver_core.py), then 1..MAX_ACTIONS hostile
actions, each one of:
- a 32-bit write of a random value to a register the model acts on (CTRL and its
  resets, EIMC, AUTOC, RXCTRL, DMATXCTL, HLREG0, FCTRL, SRRCTL, the RX/TX ring base,
  length, head, tail and enable registers, PCI_CMD and the quiesce words) or to any
  4-byte offset of the BAR;
- RDT/TDT doorbells with values inside, at and past the ring;
- TX descriptors written with buffer addresses outside the DMA window, near 2**64, of
  zero or huge lengths, without EOP, with other descriptor types, then rung;
- RX descriptors pointing their buffers outside the window, then rung, with frames
  arriving from the cable;
- `process()`.
Then: `process()` never raises, no byte of the guard areas outside the DMA window
changed, and a fresh driver core brings the NIC back: it sends a frame that reaches
the other end of the cable and receives one sent from there, intact.  The input was
*refused* if the NIC recorded a device error (its error counter), else *accepted*.

May call: drivers.ixgbe (regs, descriptors, nic, driver_core, sim, wire, frames).
"""

from __future__ import annotations

import random
import struct

from redleaf.drivers.ixgbe import regs as R
from redleaf.drivers.ixgbe.descriptors import DESC_SIZE
from redleaf.drivers.ixgbe.driver_core import IxgbeDriver
from redleaf.drivers.ixgbe.frames import make_test_frame, parse_test_frame
from redleaf.drivers.ixgbe.nic import Nic
from redleaf.drivers.ixgbe.sim import BumpAllocator
from redleaf.drivers.ixgbe.wire import pair

from .tally import Tally

MAX_ACTIONS = 30
DMA_SIZE = 2 << 20
LO, HI = 0x10000, DMA_SIZE - 0x10000          # the DMA window; guards on both sides
RECOVERY = (HI - (256 << 10), HI)              # the fresh driver's rings and buffers
GUARD = 0x5A
NDESC = 64


class Rig:
    def __init__(self):
        self.bar = bytearray(R.BAR_SIZE)
        self.dma_buf = bytearray([GUARD]) * DMA_SIZE
        self.dma_buf[LO:HI] = bytes(HI - LO)
        self.dma = memoryview(self.dma_buf)
        self.wire, self.peer = pair()
        self.nic = Nic(memoryview(self.bar), self.dma, LO, HI, self.wire, batch=64)
        self.regs = R.Regs(memoryview(self.bar))
        alloc = BumpAllocator(self.dma, LO, RECOVERY[0])
        self.drv = IxgbeDriver(memoryview(self.bar), alloc, num_rx_desc=NDESC, num_tx_desc=NDESC,
                               step=self.nic.process)
        self.bufs = alloc.buffers(2 * NDESC)
        self.drv.init(self.bufs[:NDESC])

    def guards_intact(self) -> bool:
        g = bytes([GUARD])
        return self.dma_buf[:LO] == g * LO and self.dma_buf[HI:] == g * (DMA_SIZE - HI)

    def recover(self) -> str | None:
        """A fresh driver on the same NIC: None if it sends and receives, else why not."""
        alloc = BumpAllocator(self.dma, *RECOVERY)
        drv = IxgbeDriver(memoryview(self.bar), alloc, num_rx_desc=NDESC, num_tx_desc=NDESC,
                          step=self.nic.process)
        bufs = alloc.buffers(NDESC + 2)
        self.peer.recv(1 << 16)            # what the old driver left on the cable
        drv.init(bufs[:NDESC])
        out = make_test_frame(7, 100)
        b = bufs[NDESC]
        self.dma[b:b + 100] = out
        drv.tx_batch([(b, 100)])
        for _ in range(5):
            self.nic.process()
        got = self.peer.recv(16)
        if [bytes(f) for f in got] != [out]:
            return f"the frame sent reached the cable as {[len(f) for f in got]}"
        self.peer.send([make_test_frame(8, 200)])
        rx = []
        for _ in range(5):
            self.nic.process()
            rx += drv.rx_batch(16)
        if len(rx) != 1 or parse_test_frame(self.dma[rx[0][0]:rx[0][0] + rx[0][1]]) != 8:
            return f"receiving one frame gave {rx}"
        return None


def _addr(rng: random.Random) -> int:
    return rng.choice([0, LO - 2048, LO, LO + 1, HI - 100, HI - 2048, HI, DMA_SIZE, 2 ** 64 - 1,
                       2 ** 64 - 64, 2 ** 63, rng.randrange(2 ** 64), rng.randrange(DMA_SIZE)])


def _u32(rng: random.Random) -> int:
    return rng.choice([0, 1, 0xFFFFFFFF, rng.randrange(2 ** 32), NDESC, NDESC - 1, NDESC + 1, 128, 4096])


_REGS = [R.CTRL, R.EIMC, R.EIMS, R.AUTOC, R.RXCTRL, R.DMATXCTL, R.HLREG0, R.FCTRL, R.SRRCTL(0), R.RDBAL(0),
         R.RDBAH(0), R.RDLEN(0), R.RDH(0), R.RDT(0), R.RXDCTL(0), R.TDBAL(0), R.TDBAH(0), R.TDLEN(0),
         R.TDH(0), R.TDT(0), R.TXDCTL(0), R.PCI_CMD, R.PCI_QUIESCE_REQ, R.LINKS, R.RDRXCTL, R.EEC]


def act(rng: random.Random, rig: Rig) -> str:
    r, dma = rig.regs, rig.dma
    k = rng.randrange(7)
    if k == 0:
        off = rng.choice(_REGS)
        r.write32(off, _u32(rng) if rng.random() < 0.7 else r.read32(off) ^ (1 << rng.randrange(32)))
        return f"reg {off:#x}"
    if k == 1:
        off = rng.randrange(R.BAR_SIZE // 4) * 4
        r.write32(off, _u32(rng))
        return f"any {off:#x}"
    if k == 2:
        r.write32(rng.choice([R.RDT(0), R.TDT(0)]), rng.choice([0, 1, NDESC - 1, NDESC, NDESC + 1, 2 ** 32 - 1]))
        return "tail"
    if k == 3:  # hostile TX descriptors, rung
        base = r.read32(R.TDBAL(0)) | r.read32(R.TDBAH(0)) << 32
        tdt = r.read32(R.TDT(0)) % NDESC
        n = rng.randint(1, 8)
        for i in range(n):
            off = base + ((tdt + i) % NDESC) * DESC_SIZE
            if LO <= off and off + DESC_SIZE <= HI:
                cmd = rng.choice([0x2B300000, 0x2A300000, 0, 0xFFFFFFFF, rng.randrange(2 ** 32)])
                ln = rng.choice([0, 1, 60, 1514, 9000, 0xFFFF])
                struct.pack_into("<QII", dma, off, _addr(rng), (cmd & ~0xFFFF) | ln, rng.randrange(2 ** 32))
        r.write32(R.TDT(0), (tdt + n) % NDESC)
        return "tx descriptors"
    if k == 4:  # hostile RX buffer addresses, then frames arrive
        base = r.read32(R.RDBAL(0)) | r.read32(R.RDBAH(0)) << 32
        rdt = r.read32(R.RDT(0)) % NDESC
        for i in range(rng.randint(1, 8)):
            off = base + ((rdt + i) % NDESC) * DESC_SIZE
            if LO <= off and off + DESC_SIZE <= HI:
                struct.pack_into("<QQ", dma, off, _addr(rng), _addr(rng))
        r.write32(R.RDT(0), (rdt + rng.randint(1, 8)) % NDESC)
        rig.peer.send([make_test_frame(i, rng.choice([60, 1514, 2000])) for i in range(rng.randint(1, 4))])
        return "rx descriptors"
    if k == 5:
        rig.peer.send([make_test_frame(i, 64) for i in range(rng.randint(1, 80))])
        return "frames arrive"
    rig.nic.process()
    return "process"


def one(rng: random.Random, tally: Tally) -> None:
    rig = Rig()
    errors0 = rig.nic.error_count
    steps = []
    try:
        for _ in range(rng.randint(1, MAX_ACTIONS)):
            steps.append(act(rng, rig))
            if rng.random() < 0.5:
                rig.nic.process()
        for _ in range(3):
            rig.nic.process()
    except Exception as e:
        tally.crash(f"process() raised {type(e).__name__}: {e} after {steps}")
        return
    if not rig.guards_intact():
        tally.crash(f"DMA outside the window [{LO:#x}, {HI:#x}) after {steps}")
        return
    errs = rig.nic.error_count - errors0
    last = rig.nic.errors[-1].message if errs and rig.nic.errors else ""
    try:
        why = rig.recover()
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
    if why is not None:
        tally.crash(f"a fresh driver could not recover the NIC: {why} after {steps}")
    elif errs:
        tally.refuse(f"device error: {last}"[:300], "device error")
    else:
        tally.accept("no error")


def run(count: int, seed: int) -> dict:
    tally = Tally("ixgbe-regs", seed)
    rng = random.Random(seed)
    for _ in range(count):
        one(rng, tally)
    return tally.result()
