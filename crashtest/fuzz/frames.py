"""Fuzz target `frames`: garbage frames into the emulated 82599's receive path.

A NIC brought up by the real driver core (as in ixgbe_regs) receives, each input, a
batch of frames from the other end of its wire: empty, one byte, runts, every size
around the standard and jumbo limits, up to 64 KiB and more, random bytes, bytes /
bytearray / memoryview objects; the wire is one of
- `pair` (in-memory cable, drivers/ixgbe/wire.py QueueWire);
- `shm` (a ShmCable file whose far end also writes garbage straight into the cable:
  slot lengths past the slot, a producer head far ahead of or behind the consumer,
  a damaged header), the cable a hostile peer device shares with us;
- `socket` (a socketpair cable, datagrams).
Checked: `process()` never raises (a failing wire is a device error), no byte outside
the DMA window changes, every frame the driver receives is, in order, one of the
frames that was sent (byte for byte) and no longer than the maximum frame, and the
NIC still receives a good frame after the batch.  Frames the NIC dropped (oversize:
ROC, no room: MPC) or a wire error make the input *refused*; else *accepted*.

The Rv6 network stack, the other half of issue 18's "network frames" boundary, does
not exist yet; its fuzzer joins when it lands.

May call: drivers.ixgbe (regs, nic, driver_core, sim, wire, frames).
"""

from __future__ import annotations

import os
import random
import struct
import tempfile

from redleaf.drivers.ixgbe import regs as R
from redleaf.drivers.ixgbe.driver_core import IxgbeDriver
from redleaf.drivers.ixgbe.frames import make_test_frame, parse_test_frame
from redleaf.drivers.ixgbe.nic import MAX_FRAME_STD, Nic
from redleaf.drivers.ixgbe.sim import BumpAllocator
from redleaf.drivers.ixgbe.wire import ShmCable, ShmWire, pair, socket_cable

from .tally import Tally

DMA_SIZE = 2 << 20
LO, HI = 0x10000, DMA_SIZE - 0x10000
GUARD = 0x3C
NDESC = 128
WIRES = ("pair", "shm", "socket")
SLOTS, SLOT = 64, 2048


class Rig:
    def __init__(self, kind: str):
        self.kind = kind
        self.path = None
        if kind == "pair":
            self.wire, self.peer = pair()
        elif kind == "socket":
            self.wire, self.peer = socket_cable()
        else:
            fd, self.path = tempfile.mkstemp(prefix="redleaf-fuzz-cable-", dir="/dev/shm")
            os.close(fd)
            ShmCable.create(self.path, slots=SLOTS, slot_size=SLOT)
            self.wire, self.peer = ShmWire(self.path, 0), ShmWire(self.path, 1)
        self.bar = bytearray(R.BAR_SIZE)
        self.dma_buf = bytearray([GUARD]) * DMA_SIZE
        self.dma_buf[LO:HI] = bytes(HI - LO)
        self.dma = memoryview(self.dma_buf)
        self.nic = Nic(memoryview(self.bar), self.dma, LO, HI, self.wire, batch=256)
        alloc = BumpAllocator(self.dma, LO, HI)
        self.drv = IxgbeDriver(memoryview(self.bar), alloc, num_rx_desc=NDESC, num_tx_desc=64,
                               step=self.nic.process)
        self.drv.init(alloc.buffers(4 * NDESC))

    def guards_intact(self) -> bool:
        g = bytes([GUARD])
        return self.dma_buf[:LO] == g * LO and self.dma_buf[HI:] == g * (DMA_SIZE - HI)

    def receive(self) -> list[bytes]:
        out = []
        for _ in range(8):
            self.nic.process()
            got = self.drv.rx_batch(1024)
            out += [bytes(self.dma[o:o + n]) for o, n in got]
            self.drv.give_rx_buffers([o for o, _ in got])
        return out

    def close(self) -> None:
        for w in (self.wire, self.peer):
            try:
                w.close()
            except Exception:
                pass
        if self.path:
            os.unlink(self.path)


def gen_frames(rng: random.Random) -> list:
    out = []
    for _ in range(rng.randint(1, 40)):
        n = rng.choice([0, 1, 13, 14, 59, 60, 61, 64, 1513, 1514, 1515, 1518, 2047, 2048, 2049, 9000, 9216,
                        9217, 16384, 65535, 65536, 70000, rng.randrange(1, 1515), rng.randrange(1, 3000)])
        f = rng.randbytes(n) if rng.random() < 0.5 or n < 36 else make_test_frame(rng.randrange(2 ** 32), n)
        out.append(rng.choice([bytes, bytearray, memoryview])(f) if rng.random() < 0.3 else f)
    return out


def _shm_garbage(rng: random.Random, rig: Rig) -> str:
    """The far end writes the cable by hand: a slot length past the slot, a head jump,
    a damaged header word."""
    import mmap

    with open(rig.path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        try:
            k = rng.randrange(3)
            base = ShmCable.HDR + SLOTS * SLOT          # end 1 -> end 0 slots
            head_off, tail_off = 64 + 128, 128 + 128    # direction 1 (end1 -> end0)
            head, tail = struct.unpack_from("<Q", mm, head_off)[0], struct.unpack_from("<Q", mm, tail_off)[0]
            if k == 0:
                for i in range(rng.randint(1, 4)):
                    off = base + ((head + i) % SLOTS) * SLOT
                    struct.pack_into("<I", mm, off, rng.choice([SLOT, SLOT + 1, 2 ** 32 - 1, 1 << 20, 9000]))
                struct.pack_into("<Q", mm, head_off, head + rng.randint(1, 4))
                return "slot lengths past the slot"
            if k == 1:
                struct.pack_into("<Q", mm, head_off, rng.choice([tail + SLOTS + 5, tail + 2 ** 40, 2 ** 64 - 1,
                                                                 max(tail - 3, 0), 0]))
                return "producer head jump"
            struct.pack_into("<III", mm, 0, rng.randrange(2 ** 32), rng.randrange(2 ** 32), rng.randrange(2 ** 32))
            return "header words"
        finally:
            mm.close()


def _is_subsequence(got: list[bytes], sent: list[bytes]) -> bool:
    it = iter(sent)
    return all(any(g == s for s in it) for g in got)


def one(rng: random.Random, tally: Tally, kind: str | None = None) -> None:
    kind = kind or rng.choice(WIRES)
    rig = Rig(kind)
    try:
        _one(rng, tally, rig)
    finally:
        rig.close()


def _one(rng: random.Random, tally: Tally, rig: Rig) -> None:
    frames = gen_frames(rng)
    sent, what = [], f"{rig.kind}: {len(frames)} frames of {sorted({len(f) for f in frames})[:12]}"
    for f in frames:
        try:
            rig.peer.send([f])
            sent.append(bytes(f))
        except OSError:
            pass                    # the sender's own limit (a datagram too big): not the NIC's input
    if rig.kind == "shm" and rng.random() < 0.4:
        what += " + " + _shm_garbage(rng, rig)
    errors0 = rig.nic.error_count
    try:
        got = rig.receive()
    except Exception as e:
        tally.crash(f"{what}: process() raised {type(e).__name__}: {e}")
        return
    if not rig.guards_intact():
        tally.crash(f"{what}: DMA outside the window")
        return
    garbage = "+" in what
    long = [len(g) for g in got if len(g) > MAX_FRAME_STD]
    if long:
        tally.confuse(f"{what}: frames of {long} bytes delivered, over the {MAX_FRAME_STD}-byte maximum")
        return
    if not garbage and not _is_subsequence(got, sent):
        tally.confuse(f"{what}: the driver received frames that were not sent, or out of order")
        return
    # and a good frame still gets through afterwards
    try:
        if rig.kind == "shm" and garbage:
            rig.close()
            rig.__init__("shm")     # a damaged cable is replaced, as a cable would be
        good = make_test_frame(99, 128)
        rig.peer.send([good])
        after = rig.receive()
    except Exception as e:
        tally.crash(f"{what}: then a good frame: {type(e).__name__}: {e}")
        return
    if after[-1:] != [good] or parse_test_frame(after[-1]) != 99:
        tally.crash(f"{what}: then a good frame was not received ({[len(a) for a in after]})")
        return
    dropped = len(sent) - len(got)
    if dropped > 0 or rig.nic.error_count > errors0 or garbage:
        tally.refuse(f"{what}: {len(got)} delivered, {dropped} dropped", "dropped")
    else:
        tally.accept("delivered")


def run(count: int, seed: int) -> dict:
    tally = Tally("frames", seed)
    rng = random.Random(seed)
    for _ in range(count):
        one(rng, tally)
    return tally.result()
