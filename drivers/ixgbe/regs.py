"""Intel 82599 register map (the subset the ixy init sequence touches) and the
emulation-only words that live past the end of the real 128 KiB BAR0.

Offsets are the datasheet's (82599 datasheet section 8, as used by ixy's
``ixgbe_type.h``).  The BAR is a byte buffer shared by the driver and the
emulated device; registers are little-endian 32-bit words.

Emulation-only area (``EMU_BASE`` and above, beyond the real BAR0 size):

* ``PCI_CMD``   -- a copy of the PCI command word.  Bit 2 (``PCI_CMD_BME``) is Bus
  Master Enable, as in real PCI config space.  CTRL.RST does *not* touch it.
* ``PCI_QUIESCE_REQ`` / ``PCI_QUIESCE_ACK`` -- the supervisor clears BME, then
  writes a new request token; the device, at the start of its next ``process``
  call, observes BME clear, stops all DMA and echoes the token into ACK.  Once
  ACK == token, the device will issue no more DMA until BME is set again, so the
  dead driver's memory may be reclaimed.  See :func:`quiesce_request`.
* ``EMU_GEN``   -- incremented by the device at the end of every ``process``
  call (lets a driver wait for "the device has looked at my write").
* ``EMU_ERR_COUNT`` / ``EMU_ERR_LAST`` / ``EMU_ERR_ARG`` -- device error counter and
  the last error (see :class:`DevErr`).
* Statistics: the 82599 statistics registers are clear-on-read.  A read side
  effect cannot be trapped on shared memory, so each statistic is a pair of
  64-bit words: ``TOTAL`` (written only by the device) and ``BASE`` (written only
  by the reader).  A *read* of the register is ``TOTAL - BASE`` followed by
  ``BASE = TOTAL`` (:meth:`Regs.read32` does this), which is exactly clear-on-read
  with a single writer per word -- no lock, crash safe.  A device reset sets
  ``TOTAL = BASE`` (counters read as 0).
"""
from __future__ import annotations

import enum

# --------------------------------------------------------------------------- sizes
BAR_REAL_SIZE = 0x20000          # 82599 BAR0 memory space: 128 KiB
EMU_BASE = 0x20000               # emulation-only words live past the real BAR
BAR_SIZE = 0x21000               # what a shell must allocate for the BAR

# --------------------------------------------------------------------------- general
CTRL = 0x00000
STATUS = 0x00008
CTRL_EXT = 0x00018
EICR = 0x00800
EIMS = 0x00880
EIMC = 0x00888
EEC = 0x10010
RDRXCTL = 0x02F00
RXCTRL = 0x03000
HLREG0 = 0x04240
AUTOC = 0x042A0
LINKS = 0x042A4
AUTOC2 = 0x042A8
RTTDCS = 0x04900
DMATXCTL = 0x04A80
FCTRL = 0x05080
DTXMXSZRQ = 0x08100

# ---- CTRL
CTRL_GIO_DIS = 0x00000004
CTRL_LNK_RST = 0x00000008
CTRL_RST = 0x04000000
CTRL_RST_MASK = CTRL_LNK_RST | CTRL_RST
# ---- STATUS
STATUS_LAN_ID_MASK = 0x0000000C
STATUS_GIO = 0x00080000
# ---- CTRL_EXT
CTRL_EXT_NS_DIS = 0x00010000
CTRL_EXT_DRV_LOAD = 0x10000000
# ---- EIMC/EIMS
IRQ_CLEAR_MASK = 0xFFFFFFFF
EIMC_ALL = 0x7FFFFFFF            # what ixy writes
# ---- EEC
EEC_PRES = 0x00000100
EEC_ARD = 0x00000200
# ---- RDRXCTL
RDRXCTL_CRCSTRIP = 0x00000002
RDRXCTL_DMAIDONE = 0x00000008
# ---- RXCTRL
RXCTRL_RXEN = 0x00000001
# ---- HLREG0
HLREG0_TXCRCEN = 0x00000001
HLREG0_RXCRCSTRP = 0x00000002
HLREG0_JUMBOEN = 0x00000004
HLREG0_TXPADEN = 0x00000400
HLREG0_LPBK = 0x00008000
# ---- AUTOC
AUTOC_FLU = 0x00000001
AUTOC_10G_PMA_PMD_MASK = 0x00000180
AUTOC_10G_XAUI = 0x0 << 7
AUTOC_AN_RESTART = 0x00001000
AUTOC_LMS_SHIFT = 13
AUTOC_LMS_MASK = 0x7 << AUTOC_LMS_SHIFT
AUTOC_LMS_10G_SERIAL = 0x3 << AUTOC_LMS_SHIFT
# ---- LINKS
LINKS_UP = 0x40000000
LINKS_SPEED_82599 = 0x30000000
LINKS_SPEED_10G_82599 = 0x30000000
LINKS_SPEED_1G_82599 = 0x20000000
LINKS_SPEED_100_82599 = 0x10000000
# ---- RTTDCS
RTTDCS_ARBDIS = 0x00000040
# ---- DMATXCTL
DMATXCTL_TE = 0x00000001
# ---- FCTRL
FCTRL_MPE = 0x00000100
FCTRL_UPE = 0x00000200
FCTRL_BAM = 0x00000400

# --------------------------------------------------------------------------- packet buffers
def RXPBSIZE(i: int) -> int:
    return 0x03C00 + i * 4


def TXPBSIZE(i: int) -> int:
    return 0x0CC00 + i * 4


RXPBSIZE_128KB = 0x00020000
TXPBSIZE_40KB = 0x0000A000

# --------------------------------------------------------------------------- RX queues
def _rxq(base_lo: int, base_hi: int, n: int) -> int:
    if not 0 <= n < 128:
        raise ValueError(f"queue {n} out of range")
    return base_lo + n * 0x40 if n < 64 else base_hi + (n - 64) * 0x40


def RDBAL(n: int) -> int:
    return _rxq(0x01000, 0x0D000, n)


def RDBAH(n: int) -> int:
    return _rxq(0x01004, 0x0D004, n)


def RDLEN(n: int) -> int:
    return _rxq(0x01008, 0x0D008, n)


def RDH(n: int) -> int:
    return _rxq(0x01010, 0x0D010, n)


def RDT(n: int) -> int:
    return _rxq(0x01018, 0x0D018, n)


def RXDCTL(n: int) -> int:
    return _rxq(0x01028, 0x0D028, n)


def SRRCTL(n: int) -> int:
    if 0 <= n <= 15:
        return 0x02100 + n * 4
    return _rxq(0x01014, 0x0D014, n)


def DCA_RXCTRL(n: int) -> int:
    if 0 <= n <= 15:
        return 0x02200 + n * 4
    return _rxq(0x0100C, 0x0D00C, n)


RXDCTL_ENABLE = 0x02000000
SRRCTL_BSIZEPKT_MASK = 0x0000007F
SRRCTL_BSIZEPKT_SHIFT = 10          # BSIZEPKT is in 1 KiB units
SRRCTL_DESCTYPE_MASK = 0x0E000000
SRRCTL_DESCTYPE_LEGACY = 0x00000000
SRRCTL_DESCTYPE_ADV_ONEBUF = 0x02000000
SRRCTL_DROP_EN = 0x10000000
DCA_RXCTRL_RELAX_WR = 1 << 12       # ixy clears this ("bit 12")

# --------------------------------------------------------------------------- TX queues
def _txq(base: int, n: int) -> int:
    if not 0 <= n < 128:
        raise ValueError(f"queue {n} out of range")
    return base + n * 0x40


def TDBAL(n: int) -> int:
    return _txq(0x06000, n)


def TDBAH(n: int) -> int:
    return _txq(0x06004, n)


def TDLEN(n: int) -> int:
    return _txq(0x06008, n)


def TDH(n: int) -> int:
    return _txq(0x06010, n)


def TDT(n: int) -> int:
    return _txq(0x06018, n)


def TXDCTL(n: int) -> int:
    return _txq(0x06028, n)


TXDCTL_ENABLE = 0x02000000
TXDCTL_PTHRESH_MASK = 0x3F
TXDCTL_HTHRESH_SHIFT = 8
TXDCTL_WTHRESH_SHIFT = 16

# --------------------------------------------------------------------------- statistics
GPRC = 0x04074
GPTC = 0x04080
GORCL = 0x04088
GORCH = 0x0408C
GOTCL = 0x04090
GOTCH = 0x04094
ROC = 0x040AC                        # receive oversize count


def MPC(i: int) -> int:              # missed packets count, one per packet buffer
    if not 0 <= i < 8:
        raise ValueError(f"MPC index {i} out of range")
    return 0x03FA0 + i * 4


# --------------------------------------------------------------------------- emulation area
PCI_CMD = EMU_BASE + 0x000
PCI_CMD_MSE = 0x0002                 # memory space enable
PCI_CMD_BME = 0x0004                 # bus master enable
PCI_QUIESCE_REQ = EMU_BASE + 0x004
PCI_QUIESCE_ACK = EMU_BASE + 0x008
EMU_GEN = EMU_BASE + 0x00C
EMU_ERR_COUNT = EMU_BASE + 0x010
EMU_ERR_LAST = EMU_BASE + 0x014
EMU_ERR_ARG = EMU_BASE + 0x018
EMU_ERR_QUEUE = EMU_BASE + 0x01C
EMU_STAT_TOTAL = EMU_BASE + 0x100    # u64 per statistic, device-written
EMU_STAT_BASE = EMU_BASE + 0x200     # u64 per statistic, reader-written


class DevErr(enum.IntEnum):
    """Device error codes (recorded in EMU_ERR_LAST and the device's log)."""
    NONE = 0
    BAD_DMA_ADDR = 1            # descriptor or buffer address outside the DMA window
    RING_NOT_CONFIGURED = 2     # queue enabled with base 0 / length 0
    RING_MISALIGNED = 3         # ring base not 128-byte aligned or length not a multiple of 128
    RDT_OUT_OF_RANGE = 4        # tail beyond the ring
    TDT_OUT_OF_RANGE = 5
    BAD_TX_DESC = 6             # not an advanced data descriptor, or zero length
    BAD_SRRCTL = 7              # descriptor type other than advanced one-buffer, or bsize 0
    TX_FRAME_TOO_LONG = 8       # frame bigger than the max frame size
    REG_UNALIGNED = 9           # (for shells that trap register writes)
    WIRE_ERROR = 10             # the wire backend raised


# Statistic slots (index into the TOTAL/BASE arrays).  Octet counters are 64-bit
# totals exposed as L/H register pairs.
STAT_SLOTS: dict[int, int] = {GPRC: 0, GPTC: 1, GORCL: 2, GOTCL: 3, ROC: 4}
for _i in range(8):
    STAT_SLOTS[MPC(_i)] = 5 + _i
NUM_STATS = 13
STAT_HI: dict[int, int] = {GORCH: GORCL, GOTCH: GOTCL}   # high half -> low half register
STAT_WIDTH: dict[int, int] = {GORCL: 36, GOTCL: 36}       # 82599 octet counters are 36 bit


def stat_total_off(slot: int) -> int:
    return EMU_STAT_TOTAL + 8 * slot


def stat_base_off(slot: int) -> int:
    return EMU_STAT_BASE + 8 * slot


class Regs:
    """Register access from the *driver's* side of the BAR.

    Plain loads/stores on shared memory except the statistics registers, which
    get the 82599's clear-on-read semantics (see module doc).
    """

    __slots__ = ("bar", "_w32", "_w64", "_latch")

    def __init__(self, bar: memoryview):
        bar = memoryview(bar).cast("B")
        if len(bar) < BAR_SIZE:
            raise ValueError(f"BAR too small: {len(bar)} < {BAR_SIZE:#x}")
        self.bar = bar
        self._w32 = bar.cast("I")
        self._w64 = bar.cast("Q")
        self._latch: dict[int, int] = {}

    def read32(self, off: int) -> int:
        slot = STAT_SLOTS.get(off)
        if slot is not None:
            t = self._w64[stat_total_off(slot) >> 3]
            b = self._w64[stat_base_off(slot) >> 3]
            self._w64[stat_base_off(slot) >> 3] = t
            v = (t - b) & ((1 << STAT_WIDTH.get(off, 32)) - 1)
            if off in STAT_WIDTH:
                self._latch[off] = v >> 32
            return v & 0xFFFFFFFF
        lo = STAT_HI.get(off)
        if lo is not None:
            return self._latch.pop(lo, 0)
        return self._w32[off >> 2]

    def write32(self, off: int, val: int) -> None:
        self._w32[off >> 2] = val & 0xFFFFFFFF

    def set_flags(self, off: int, flags: int) -> None:
        self.write32(off, self.read32(off) | flags)

    def clear_flags(self, off: int, flags: int) -> None:
        self.write32(off, self.read32(off) & ~flags)


# --------------------------------------------------------------------------- quiesce helpers
# Run by the device host in the device process (domains/device_host.py) when the
# supervisor asks it, through the host's shell, to stop DMA; never by the supervisor.
def quiesce_request(bar: memoryview) -> int:
    """Clear Bus Master Enable and post a quiesce request; returns the token.

    Call :func:`quiesce_acked` until it is true; from then on the device performs
    no DMA until BME is set again.
    """
    w = memoryview(bar).cast("B").cast("I")
    w[PCI_CMD >> 2] = w[PCI_CMD >> 2] & ~PCI_CMD_BME
    token = (w[PCI_QUIESCE_REQ >> 2] + 1) & 0xFFFFFFFF or 1
    w[PCI_QUIESCE_REQ >> 2] = token       # written *after* BME is cleared
    return token


def quiesce_acked(bar: memoryview, token: int) -> bool:
    w = memoryview(bar).cast("B").cast("I")
    return w[PCI_QUIESCE_ACK >> 2] == token


def device_errors(bar: memoryview) -> tuple[int, DevErr, int]:
    """(error count, last error, last error argument) as published in the BAR."""
    w = memoryview(bar).cast("B").cast("I")
    last = w[EMU_ERR_LAST >> 2]
    try:
        code = DevErr(last)
    except ValueError:
        code = DevErr.NONE
    return w[EMU_ERR_COUNT >> 2], code, w[EMU_ERR_ARG >> 2]
