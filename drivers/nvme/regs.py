"""NVMe BAR0 register map and field encode/decode helpers (NVMe base spec 1.4, section 3.1).

Pure module: no I/O. Everything here works on plain integers or on a writable
``memoryview`` holding BAR0 (see :class:`Bar`).

BAR0 layout used by the emulated controller
-------------------------------------------

========  ======  ==========================================================
offset    size    register
========  ======  ==========================================================
0x0000    8       CAP    controller capabilities            (device writes)
0x0008    4       VS     version                            (device writes)
0x000C    4       INTMS  interrupt mask set                 (host writes, W1S)
0x0010    4       INTMC  interrupt mask clear               (host writes, W1C)
0x0014    4       CC     controller configuration           (host writes)
0x001C    4       CSTS   controller status                  (device writes)
0x0020    4       NSSR   NVM subsystem reset ("NVMe")       (host writes)
0x0024    4       AQA    admin queue attributes             (host writes)
0x0028    8       ASQ    admin submission queue base        (host writes)
0x0030    8       ACQ    admin completion queue base        (host writes)
0x1000    ...     doorbells: SQyTDBL at 0x1000 + (2y)   * (4 << CAP.DSTRD)
                             CQyHDBL at 0x1000 + (2y+1) * (4 << CAP.DSTRD)
0x2000    4       EMU_PCICMD  emulated PCI command word      (host/supervisor writes)
                  bit 2 = Bus Master Enable (same bit as the PCI Command register)
0x2004    4       EMU_QREQ    quiesce request sequence number (host/supervisor writes)
0x2008    4       EMU_QACK    quiesce acknowledge: the device copies EMU_QREQ here once
                              it has observed BME=0 and stopped all DMA (device writes)
0x200C    4       EMU_DEVSTAT bit0 = DMA stopped (BME observed 0)  (device writes)
0x2010    4       EMU_IRQCNT  incremented (mod 2**32) every time the device raises an
                              interrupt; a shell may poll it     (device writes)
0x2014    4       EMU_ERRCNT  device-side error counter (bad DMA, bad doorbell, ...)
========  ======  ==========================================================

The emulation words live beyond the doorbell window, so the doorbell window
(0x1000..0x1FFF) bounds the number of queues: ``(max_qid + 1) * 2 * (4 << DSTRD)
<= 0x1000``.

The register file is shared memory.  Each register has a single writer (noted
above), which keeps the model free of cross-process locks.  INTMS/INTMC are the
exception: the host writes a bit mask, the device folds it into its private mask
and writes the register back to 0.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

# --- register offsets -------------------------------------------------------
CAP = 0x00
VS = 0x08
INTMS = 0x0C
INTMC = 0x10
CC = 0x14
CSTS = 0x1C
NSSR = 0x20
AQA = 0x24
ASQ = 0x28
ACQ = 0x30

DOORBELL_BASE = 0x1000
DOORBELL_END = 0x2000

EMU_BASE = 0x2000
EMU_PCICMD = 0x2000
EMU_QREQ = 0x2004
EMU_QACK = 0x2008
EMU_DEVSTAT = 0x200C
EMU_IRQCNT = 0x2010
EMU_ERRCNT = 0x2014

#: minimum size of the BAR buffer handed to the controller and the driver
BAR_SIZE = 0x3000

PCICMD_MSE = 1 << 1     # memory space enable (ignored by the model)
PCICMD_BME = 1 << 2     # bus master enable: device may DMA only while set
DEVSTAT_DMA_STOPPED = 1 << 0

NSSR_MAGIC = 0x4E564D65  # "NVMe"

# --- CAP ------------------------------------------------------------------------


class CapFields(NamedTuple):
    mqes: int       # maximum queue entries supported, zero-based (bits 15:0)
    cqr: int        # contiguous queues required (bit 16)
    ams: int        # arbitration mechanisms supported (bits 18:17)
    to: int         # ready timeout in 500 ms units (bits 31:24)
    dstrd: int      # doorbell stride: stride = 4 << dstrd bytes (bits 35:32)
    nssrs: int      # NVM subsystem reset supported (bit 36)
    css: int        # command sets supported (bits 44:37), bit 0 = NVM
    bps: int        # boot partition support (bit 45)
    mpsmin: int     # minimum memory page size = 2**(12+mpsmin) (bits 51:48)
    mpsmax: int     # maximum memory page size = 2**(12+mpsmax) (bits 55:52)

    @property
    def max_entries(self) -> int:
        return self.mqes + 1

    @property
    def doorbell_stride(self) -> int:
        return 4 << self.dstrd

    @property
    def timeout_s(self) -> float:
        return self.to * 0.5


def cap_encode(mqes: int, *, cqr: int = 1, ams: int = 0, to: int = 20, dstrd: int = 0,
               nssrs: int = 1, css: int = 1, bps: int = 0, mpsmin: int = 0,
               mpsmax: int = 4) -> int:
    if not 1 <= mqes <= 0xFFFF:
        raise ValueError("CAP.MQES must be in 1..65535 (zero-based, >= 1)")
    return ((mqes & 0xFFFF) | (cqr & 1) << 16 | (ams & 3) << 17 | (to & 0xFF) << 24
            | (dstrd & 0xF) << 32 | (nssrs & 1) << 36 | (css & 0xFF) << 37
            | (bps & 1) << 45 | (mpsmin & 0xF) << 48 | (mpsmax & 0xF) << 52)


def cap_decode(v: int) -> CapFields:
    return CapFields(v & 0xFFFF, v >> 16 & 1, v >> 17 & 3, v >> 24 & 0xFF, v >> 32 & 0xF,
                     v >> 36 & 1, v >> 37 & 0xFF, v >> 45 & 1, v >> 48 & 0xF, v >> 52 & 0xF)


# --- VS ---------------------------------------------------------------------------

def vs_encode(major: int, minor: int, tertiary: int = 0) -> int:
    return (major & 0xFFFF) << 16 | (minor & 0xFF) << 8 | (tertiary & 0xFF)


def vs_decode(v: int) -> tuple[int, int, int]:
    return v >> 16 & 0xFFFF, v >> 8 & 0xFF, v & 0xFF


NVME_VERSION = vs_encode(1, 4, 0)

# --- CC ---------------------------------------------------------------------------
CC_EN = 1 << 0
CC_CSS_NVM = 0
CC_SHN_NONE = 0
CC_SHN_NORMAL = 1
CC_SHN_ABRUPT = 2


class CcFields(NamedTuple):
    en: int       # bit 0
    css: int      # bits 6:4   I/O command set selected (0 = NVM)
    mps: int      # bits 10:7  memory page size = 2**(12+mps)
    ams: int      # bits 13:11 arbitration mechanism
    shn: int      # bits 15:14 shutdown notification
    iosqes: int   # bits 19:16 I/O SQ entry size = 2**iosqes (6 -> 64 bytes)
    iocqes: int   # bits 23:20 I/O CQ entry size = 2**iocqes (4 -> 16 bytes)

    @property
    def page_size(self) -> int:
        return 1 << (12 + self.mps)


def cc_encode(*, en: int = 0, css: int = 0, mps: int = 0, ams: int = 0, shn: int = 0,
              iosqes: int = 6, iocqes: int = 4) -> int:
    return ((en & 1) | (css & 7) << 4 | (mps & 0xF) << 7 | (ams & 7) << 11
            | (shn & 3) << 14 | (iosqes & 0xF) << 16 | (iocqes & 0xF) << 20)


def cc_decode(v: int) -> CcFields:
    return CcFields(v & 1, v >> 4 & 7, v >> 7 & 0xF, v >> 11 & 7, v >> 14 & 3,
                    v >> 16 & 0xF, v >> 20 & 0xF)


# --- CSTS -------------------------------------------------------------------------
CSTS_RDY = 1 << 0
CSTS_CFS = 1 << 1
CSTS_SHST_SHIFT = 2
CSTS_SHST_MASK = 3 << 2
CSTS_NSSRO = 1 << 4
CSTS_PP = 1 << 5
SHST_NORMAL = 0
SHST_OCCURRING = 1
SHST_COMPLETE = 2


class CstsFields(NamedTuple):
    rdy: int
    cfs: int
    shst: int
    nssro: int
    pp: int


def csts_encode(*, rdy: int = 0, cfs: int = 0, shst: int = 0, nssro: int = 0, pp: int = 0) -> int:
    return (rdy & 1) | (cfs & 1) << 1 | (shst & 3) << 2 | (nssro & 1) << 4 | (pp & 1) << 5


def csts_decode(v: int) -> CstsFields:
    return CstsFields(v & 1, v >> 1 & 1, v >> 2 & 3, v >> 4 & 1, v >> 5 & 1)


# --- AQA --------------------------------------------------------------------------

def aqa_encode(asqs: int, acqs: int) -> int:
    """``asqs``/``acqs`` are *zero-based* sizes, as stored in the register."""
    return (asqs & 0xFFF) | (acqs & 0xFFF) << 16


def aqa_decode(v: int) -> tuple[int, int]:
    """Return (ASQS, ACQS), zero-based."""
    return v & 0xFFF, v >> 16 & 0xFFF


# --- doorbells --------------------------------------------------------------------

def sq_tail_doorbell(qid: int, dstrd: int = 0) -> int:
    """BAR offset of the Submission Queue ``qid`` Tail Doorbell."""
    return DOORBELL_BASE + (2 * qid) * (4 << dstrd)


def cq_head_doorbell(qid: int, dstrd: int = 0) -> int:
    """BAR offset of the Completion Queue ``qid`` Head Doorbell."""
    return DOORBELL_BASE + (2 * qid + 1) * (4 << dstrd)


def max_qid_for_stride(dstrd: int) -> int:
    """Largest queue id whose doorbells fit in the 0x1000..0x1FFF window."""
    return (DOORBELL_END - DOORBELL_BASE) // (2 * (4 << dstrd)) - 1


# --- BAR accessor -----------------------------------------------------------------
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Bar:
    """Typed 32/64-bit access to a BAR0 buffer (little-endian, like PCIe MMIO).

    Both the controller and the driver use it on the same shared buffer.  Aligned
    4-byte stores go through ``memoryview.cast('I')`` item assignment, a single
    aligned 32-bit store in CPython on the platforms we run on.
    """

    __slots__ = ("mv", "u32")

    def __init__(self, buf) -> None:
        mv = memoryview(buf)
        if mv.readonly:
            raise ValueError("BAR buffer must be writable")
        mv = mv.cast("B")
        if len(mv) < BAR_SIZE:
            raise ValueError(f"BAR buffer must be at least {BAR_SIZE:#x} bytes, got {len(mv):#x}")
        self.mv = mv
        self.u32 = mv[:BAR_SIZE].cast("I")

    def read32(self, off: int) -> int:
        return self.u32[off >> 2]

    def write32(self, off: int, value: int) -> None:
        self.u32[off >> 2] = value & 0xFFFFFFFF

    def read64(self, off: int) -> int:
        return _U64.unpack_from(self.mv, off)[0]

    def write64(self, off: int, value: int) -> None:
        _U64.pack_into(self.mv, off, value & 0xFFFFFFFFFFFFFFFF)

    # convenience decoders
    def cap(self) -> CapFields:
        return cap_decode(self.read64(CAP))

    def cc(self) -> CcFields:
        return cc_decode(self.read32(CC))

    def csts(self) -> CstsFields:
        return csts_decode(self.read32(CSTS))

    def set_bme(self, on: bool) -> None:
        v = self.read32(EMU_PCICMD)
        self.write32(EMU_PCICMD, (v | PCICMD_BME | PCICMD_MSE) if on else (v & ~PCICMD_BME))

    def request_quiesce(self) -> int:
        """Supervisor side: clear BME and post a new quiesce request.

        Returns the request number; the device has stopped DMA once
        ``quiesce_acked(n)`` is true.
        """
        self.set_bme(False)
        n = (self.read32(EMU_QREQ) + 1) & 0xFFFFFFFF
        self.write32(EMU_QREQ, n)
        return n

    def quiesce_acked(self, n: int) -> bool:
        return self.read32(EMU_QACK) == n and bool(self.read32(EMU_DEVSTAT) & DEVSTAT_DMA_STOPPED)


# The device quiesce protocol (see domains/device_host.py): before a dead driver's
# memory is reclaimed, the supervisor asks the device host, through the host's shell,
# to stop DMA; the host, in the device process, clears bus mastering with these and
# runs the model until it confirms.  The supervisor never imports them.
def quiesce_request(bar) -> int:
    return Bar(bar).request_quiesce()


def quiesce_acked(bar, token: int) -> bool:
    return Bar(bar).quiesce_acked(token)
