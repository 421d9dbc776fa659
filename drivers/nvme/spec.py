"""NVMe command formats, status codes, PRP walking and Identify data structures.

Pure module (no I/O).  References: NVMe base specification 1.4 (sections 4.2
submission queue entry, 4.6 completion queue entry, 4.6.1 status field,
4.3 PRP, 5 admin commands, 6 NVM commands).

Choices of this emulation (documented here, relied on by controller and driver):

* Logical block size: **4096 bytes** by default (LBA format 0, LBADS = 12).  The
  controller also accepts ``lba_shift=9`` (512-byte blocks).  4 KiB blocks make one
  random 4 KiB read one command of one block and one PRP entry.
* Only physically contiguous I/O queues (CAP.CQR = 1); only PRPs (no SGLs).
* One namespace, NSID 1.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

SQE_SIZE = 64
CQE_SIZE = 16
SQE_SHIFT = 6     # CC.IOSQES value
CQE_SHIFT = 4     # CC.IOCQES value

# --- opcodes ----------------------------------------------------------------------
# admin command set
ADMIN_DELETE_SQ = 0x00
ADMIN_CREATE_SQ = 0x01
ADMIN_GET_LOG_PAGE = 0x02
ADMIN_DELETE_CQ = 0x04
ADMIN_CREATE_CQ = 0x05
ADMIN_IDENTIFY = 0x06
ADMIN_ABORT = 0x08
ADMIN_SET_FEATURES = 0x09
ADMIN_GET_FEATURES = 0x0A
ADMIN_ASYNC_EVENT = 0x0C

# NVM command set
NVM_FLUSH = 0x00
NVM_WRITE = 0x01
NVM_READ = 0x02
NVM_WRITE_ZEROES = 0x08

# Identify CNS values
CNS_NAMESPACE = 0x00
CNS_CONTROLLER = 0x01
CNS_ACTIVE_NS_LIST = 0x02

# feature identifiers
FEAT_ARBITRATION = 0x01
FEAT_POWER_MGMT = 0x02
FEAT_TEMP_THRESHOLD = 0x04
FEAT_ERROR_RECOVERY = 0x05
FEAT_VOLATILE_WC = 0x06
FEAT_NUM_QUEUES = 0x07
FEAT_IRQ_COALESCING = 0x08
FEAT_IRQ_CONFIG = 0x09
FEAT_WRITE_ATOMICITY = 0x0A
FEAT_ASYNC_EVENT_CFG = 0x0B

# log page identifiers
LOG_ERROR_INFO = 0x01
LOG_SMART = 0x02
LOG_FW_SLOT = 0x03

NSID_ALL = 0xFFFFFFFF

# --- status field ---------------------------------------------------------------
# In the CQE, DW3 bits 31:17 hold the status field (bit 16 is the phase tag).  This
# module represents a status as the 15-bit value (DW3 >> 17):
#   bits 7:0 SC, 10:8 SCT, 12:11 CRD, 13 M (more), 14 DNR (do not retry).
SCT_GENERIC = 0
SCT_COMMAND_SPECIFIC = 1
SCT_MEDIA = 2
SCT_PATH = 3
SCT_VENDOR = 7

# generic command status (SCT 0)
SC_SUCCESS = 0x00
SC_INVALID_OPCODE = 0x01
SC_INVALID_FIELD = 0x02
SC_CID_CONFLICT = 0x03
SC_DATA_TRANSFER_ERROR = 0x04
SC_ABORTED_POWER_LOSS = 0x05
SC_INTERNAL_ERROR = 0x06
SC_ABORT_REQUESTED = 0x07
SC_ABORTED_SQ_DELETION = 0x08
SC_INVALID_NAMESPACE = 0x0B
SC_COMMAND_SEQUENCE_ERROR = 0x0C
SC_PRP_OFFSET_INVALID = 0x13
SC_LBA_OUT_OF_RANGE = 0x80
SC_CAPACITY_EXCEEDED = 0x81
SC_NAMESPACE_NOT_READY = 0x82

# command specific status (SCT 1)
SC_CQ_INVALID = 0x00
SC_INVALID_QID = 0x01
SC_INVALID_QSIZE = 0x02
SC_ABORT_LIMIT = 0x03
SC_AER_LIMIT = 0x05
SC_INVALID_IRQ_VECTOR = 0x08
SC_INVALID_LOG_PAGE = 0x09
SC_INVALID_QUEUE_DELETION = 0x0C
SC_FEATURE_NOT_SAVEABLE = 0x0D
SC_FEATURE_NOT_CHANGEABLE = 0x0E

# media and data integrity errors (SCT 2)
SC_WRITE_FAULT = 0x80
SC_UNRECOVERED_READ = 0x81

STATUS_DNR = 1 << 14
STATUS_MORE = 1 << 13


def make_status(sct: int, sc: int, *, dnr: bool = False) -> int:
    return (sc & 0xFF) | (sct & 7) << 8 | (STATUS_DNR if dnr else 0)


def status_sc(status: int) -> int:
    return status & 0xFF


def status_sct(status: int) -> int:
    return status >> 8 & 7


def status_code(status: int) -> tuple[int, int]:
    """(SCT, SC) of a 15-bit status, ignoring CRD/M/DNR."""
    return status >> 8 & 7, status & 0xFF


def status_dnr(status: int) -> bool:
    return bool(status & STATUS_DNR)


# ready-made status values
ST_SUCCESS = 0
ST_INVALID_OPCODE = make_status(SCT_GENERIC, SC_INVALID_OPCODE, dnr=True)
ST_INVALID_FIELD = make_status(SCT_GENERIC, SC_INVALID_FIELD, dnr=True)
ST_DATA_TRANSFER_ERROR = make_status(SCT_GENERIC, SC_DATA_TRANSFER_ERROR)
ST_INTERNAL_ERROR = make_status(SCT_GENERIC, SC_INTERNAL_ERROR)
ST_ABORT_REQUESTED = make_status(SCT_GENERIC, SC_ABORT_REQUESTED)
ST_ABORTED_SQ_DELETION = make_status(SCT_GENERIC, SC_ABORTED_SQ_DELETION)
ST_INVALID_NAMESPACE = make_status(SCT_GENERIC, SC_INVALID_NAMESPACE, dnr=True)
ST_COMMAND_SEQUENCE_ERROR = make_status(SCT_GENERIC, SC_COMMAND_SEQUENCE_ERROR, dnr=True)
ST_PRP_OFFSET_INVALID = make_status(SCT_GENERIC, SC_PRP_OFFSET_INVALID, dnr=True)
ST_LBA_OUT_OF_RANGE = make_status(SCT_GENERIC, SC_LBA_OUT_OF_RANGE, dnr=True)
ST_CQ_INVALID = make_status(SCT_COMMAND_SPECIFIC, SC_CQ_INVALID, dnr=True)
ST_INVALID_QID = make_status(SCT_COMMAND_SPECIFIC, SC_INVALID_QID, dnr=True)
ST_INVALID_QSIZE = make_status(SCT_COMMAND_SPECIFIC, SC_INVALID_QSIZE, dnr=True)
ST_AER_LIMIT = make_status(SCT_COMMAND_SPECIFIC, SC_AER_LIMIT, dnr=True)
ST_INVALID_IRQ_VECTOR = make_status(SCT_COMMAND_SPECIFIC, SC_INVALID_IRQ_VECTOR, dnr=True)
ST_INVALID_LOG_PAGE = make_status(SCT_COMMAND_SPECIFIC, SC_INVALID_LOG_PAGE, dnr=True)
ST_INVALID_QUEUE_DELETION = make_status(SCT_COMMAND_SPECIFIC, SC_INVALID_QUEUE_DELETION, dnr=True)
ST_FEATURE_NOT_SAVEABLE = make_status(SCT_COMMAND_SPECIFIC, SC_FEATURE_NOT_SAVEABLE, dnr=True)
ST_WRITE_FAULT = make_status(SCT_MEDIA, SC_WRITE_FAULT)
ST_UNRECOVERED_READ = make_status(SCT_MEDIA, SC_UNRECOVERED_READ)

_STATUS_NAMES = {
    (SCT_GENERIC, SC_SUCCESS): "success",
    (SCT_GENERIC, SC_INVALID_OPCODE): "invalid command opcode",
    (SCT_GENERIC, SC_INVALID_FIELD): "invalid field in command",
    (SCT_GENERIC, SC_CID_CONFLICT): "command id conflict",
    (SCT_GENERIC, SC_DATA_TRANSFER_ERROR): "data transfer error",
    (SCT_GENERIC, SC_ABORTED_POWER_LOSS): "aborted due to power loss",
    (SCT_GENERIC, SC_INTERNAL_ERROR): "internal error",
    (SCT_GENERIC, SC_ABORT_REQUESTED): "command abort requested",
    (SCT_GENERIC, SC_ABORTED_SQ_DELETION): "aborted due to SQ deletion",
    (SCT_GENERIC, SC_INVALID_NAMESPACE): "invalid namespace or format",
    (SCT_GENERIC, SC_COMMAND_SEQUENCE_ERROR): "command sequence error",
    (SCT_GENERIC, SC_PRP_OFFSET_INVALID): "PRP offset invalid",
    (SCT_GENERIC, SC_LBA_OUT_OF_RANGE): "LBA out of range",
    (SCT_GENERIC, SC_CAPACITY_EXCEEDED): "capacity exceeded",
    (SCT_GENERIC, SC_NAMESPACE_NOT_READY): "namespace not ready",
    (SCT_COMMAND_SPECIFIC, SC_CQ_INVALID): "completion queue invalid",
    (SCT_COMMAND_SPECIFIC, SC_INVALID_QID): "invalid queue identifier",
    (SCT_COMMAND_SPECIFIC, SC_INVALID_QSIZE): "invalid queue size",
    (SCT_COMMAND_SPECIFIC, SC_ABORT_LIMIT): "abort command limit exceeded",
    (SCT_COMMAND_SPECIFIC, SC_AER_LIMIT): "asynchronous event request limit exceeded",
    (SCT_COMMAND_SPECIFIC, SC_INVALID_IRQ_VECTOR): "invalid interrupt vector",
    (SCT_COMMAND_SPECIFIC, SC_INVALID_LOG_PAGE): "invalid log page",
    (SCT_COMMAND_SPECIFIC, SC_INVALID_QUEUE_DELETION): "invalid queue deletion",
    (SCT_COMMAND_SPECIFIC, SC_FEATURE_NOT_SAVEABLE): "feature identifier not saveable",
    (SCT_COMMAND_SPECIFIC, SC_FEATURE_NOT_CHANGEABLE): "feature not changeable",
    (SCT_MEDIA, SC_WRITE_FAULT): "write fault",
    (SCT_MEDIA, SC_UNRECOVERED_READ): "unrecovered read error",
}


def status_str(status: int) -> str:
    sct, sc = status_code(status)
    name = _STATUS_NAMES.get((sct, sc), "unknown status")
    return f"{name} (SCT {sct:#x} SC {sc:#04x}{', DNR' if status_dnr(status) else ''})"


# --- asynchronous events (completion DW0 of an Asynchronous Event Request) -----------
AER_TYPE_ERROR = 0
AER_ERR_INVALID_DOORBELL_REGISTER = 0x00
AER_ERR_INVALID_DOORBELL_VALUE = 0x01
AER_ERR_PERSISTENT_INTERNAL = 0x03


def aer_dw0(event_type: int, info: int, log_page: int) -> int:
    return (event_type & 7) | (info & 0xFF) << 8 | (log_page & 0xFF) << 16


# --- submission / completion entries -------------------------------------------------
#: SQE: opc u8, flags u8 (FUSE 1:0, PSDT 7:6), cid u16, nsid u32, cdw2-3 u64, mptr u64,
#: prp1 u64, prp2 u64, cdw10..cdw15 u32
SQE = struct.Struct("<BBHIQQQQIIIIII")
assert SQE.size == SQE_SIZE
#: CQE without DW3: dw0 u32, dw1 u32, sqhd u16, sqid u16.  DW3 (cid | phase<<16 |
#: status<<17) is stored separately, *after* the rest, so a poller that sees the new
#: phase tag sees a complete entry.
CQE_HEAD = struct.Struct("<IIHH")
CQE = struct.Struct("<IIHHHH")
assert CQE.size == CQE_SIZE

#: numpy views of the same layouts (for inspection and bulk work in tests/tools)
SQE_DTYPE = np.dtype([("opc", "<u1"), ("flags", "<u1"), ("cid", "<u2"), ("nsid", "<u4"),
                      ("cdw2", "<u4"), ("cdw3", "<u4"), ("mptr", "<u8"), ("prp1", "<u8"),
                      ("prp2", "<u8"), ("cdw10", "<u4"), ("cdw11", "<u4"), ("cdw12", "<u4"),
                      ("cdw13", "<u4"), ("cdw14", "<u4"), ("cdw15", "<u4")])
CQE_DTYPE = np.dtype([("dw0", "<u4"), ("dw1", "<u4"), ("sqhd", "<u2"), ("sqid", "<u2"),
                      ("cid", "<u2"), ("status", "<u2")])
assert SQE_DTYPE.itemsize == SQE_SIZE and CQE_DTYPE.itemsize == CQE_SIZE


class Command(NamedTuple):
    opc: int
    cid: int
    nsid: int = 0
    prp1: int = 0
    prp2: int = 0
    cdw10: int = 0
    cdw11: int = 0
    cdw12: int = 0
    cdw13: int = 0
    cdw14: int = 0
    cdw15: int = 0
    flags: int = 0
    mptr: int = 0
    cdw2_3: int = 0


def encode_sqe(buf, off: int, cmd: Command) -> None:
    SQE.pack_into(buf, off, cmd.opc, cmd.flags, cmd.cid, cmd.nsid, cmd.cdw2_3, cmd.mptr,
                  cmd.prp1, cmd.prp2, cmd.cdw10, cmd.cdw11, cmd.cdw12, cmd.cdw13,
                  cmd.cdw14, cmd.cdw15)


def decode_sqe(buf, off: int = 0) -> Command:
    (opc, flags, cid, nsid, c23, mptr, prp1, prp2,
     c10, c11, c12, c13, c14, c15) = SQE.unpack_from(buf, off)
    return Command(opc, cid, nsid, prp1, prp2, c10, c11, c12, c13, c14, c15, flags, mptr, c23)


class Completion(NamedTuple):
    dw0: int
    dw1: int
    sqhd: int
    sqid: int
    cid: int
    phase: int
    status: int   # 15-bit status field


def encode_cqe(buf, off: int, c: Completion) -> None:
    CQE.pack_into(buf, off, c.dw0, c.dw1, c.sqhd, c.sqid, c.cid,
                  (c.phase & 1) | (c.status & 0x7FFF) << 1)


def decode_cqe(buf, off: int = 0) -> Completion:
    dw0, dw1, sqhd, sqid, cid, sf = CQE.unpack_from(buf, off)
    return Completion(dw0, dw1, sqhd, sqid, cid, sf & 1, sf >> 1)


def cqe_dw3(cid: int, phase: int, status: int) -> int:
    return (cid & 0xFFFF) | (phase & 1) << 16 | (status & 0x7FFF) << 17


# --- phase tags ---------------------------------------------------------------------

def advance(index: int, phase: int, size: int) -> tuple[int, int]:
    """Advance a queue index by one; the phase tag inverts on every wrap to 0.

    Both sides start with phase 1 (the CQ memory is zeroed, so an unwritten entry
    reads as phase 0 on the first pass).
    """
    index += 1
    if index == size:
        return 0, phase ^ 1
    return index, phase


def queue_used(head: int, tail: int, size: int) -> int:
    return (tail - head) % size


def queue_full(head: int, tail: int, size: int) -> bool:
    return (tail + 1) % size == head


# --- Read/Write command fields -------------------------------------------------------
RW_FUA = 1 << 30
RW_LR = 1 << 31


def rw_command(opc: int, cid: int, nsid: int, slba: int, nblocks: int, prp1: int,
               prp2: int = 0, *, fua: bool = False) -> Command:
    """Read/Write/Write Zeroes: CDW10-11 SLBA, CDW12 bits 15:0 NLB (zero-based)."""
    if not 1 <= nblocks <= 0x10000:
        raise ValueError("nblocks must be in 1..65536")
    return Command(opc, cid, nsid, prp1, prp2, slba & 0xFFFFFFFF, slba >> 32 & 0xFFFFFFFF,
                   (nblocks - 1) | (RW_FUA if fua else 0))


# --- PRP walking ----------------------------------------------------------------------

class DmaFault(Exception):
    """Raised by PRP walking/DMA helpers; carries the NVMe status to complete with."""

    def __init__(self, status: int, msg: str = "") -> None:
        super().__init__(msg or status_str(status))
        self.status = status


def prp_segments(prp1: int, prp2: int, length: int, page_size: int,
                 read_list: Callable[[int, int], list[int]]) -> list[tuple[int, int]]:
    """Walk PRP1/PRP2 (and PRP lists) for a transfer of ``length`` bytes.

    Returns ``[(address, nbytes), ...]`` with physically contiguous pieces merged.
    ``read_list(address, count)`` must return ``count`` little-endian u64 entries read
    from DMA memory (raising :class:`DmaFault` if the list itself is unreachable).

    Rules (spec 4.3): PRP1 may carry a dword-aligned offset into its page; every other
    data entry must be page aligned; if the rest of the transfer fits in one page PRP2
    is that page, otherwise PRP2 points to a qword-aligned PRP list whose last entry in
    each list page chains to the next list page when more entries are needed.
    """
    if length <= 0:
        return []
    pmask = page_size - 1
    if prp1 & 3:
        raise DmaFault(ST_PRP_OFFSET_INVALID, "PRP1 not dword aligned")
    first = page_size - (prp1 & pmask)
    if length <= first:
        return [(prp1, length)]
    segs = [[prp1, first]]
    rem = length - first
    if rem <= page_size:
        if prp2 & pmask:
            raise DmaFault(ST_PRP_OFFSET_INVALID, "PRP2 data pointer not page aligned")
        _append(segs, prp2, rem)
        return [(a, n) for a, n in segs]
    lst = prp2
    while rem > 0:
        if lst & 7:
            raise DmaFault(ST_PRP_OFFSET_INVALID, "PRP list pointer not qword aligned")
        slots = (page_size - (lst & pmask)) >> 3
        need = (rem + pmask) // page_size
        if need <= slots:
            entries = read_list(lst, need)
            chain = None
        else:
            entries = read_list(lst, slots)
            chain = entries[-1]
            entries = entries[:-1]
        for e in entries:
            if e & pmask:
                raise DmaFault(ST_PRP_OFFSET_INVALID, "PRP list entry not page aligned")
            n = page_size if rem > page_size else rem
            _append(segs, e, n)
            rem -= n
        if chain is not None:
            lst = chain
    return [(a, n) for a, n in segs]


def _append(segs: list, addr: int, n: int) -> None:
    last = segs[-1]
    if last[0] + last[1] == addr:
        last[1] += n
    else:
        segs.append([addr, n])


def prp_build(buf_addr: int, length: int, page_size: int) -> tuple[int, list[int]]:
    """Host side: PRP1 and the list of further page entries for a contiguous buffer.

    Returns ``(prp1, pages)``; ``pages`` is empty (PRP2 unused), has one entry (that
    is PRP2), or more (they go into a PRP list that PRP2 points to).
    """
    pmask = page_size - 1
    first = page_size - (buf_addr & pmask)
    if length <= first:
        return buf_addr, []
    start = (buf_addr & ~pmask) + page_size
    end = buf_addr + length
    return buf_addr, list(range(start, end, page_size))


# --- Identify data structures -------------------------------------------------------
IDENTIFY_SIZE = 4096


def _ascii(s: str, n: int) -> bytes:
    return s.encode("ascii", "replace")[:n].ljust(n, b" ")


@dataclass
class IdentifyController:
    vid: int = 0x1B36           # vendor id
    ssvid: int = 0x1AF4         # subsystem vendor id
    sn: str = "REDLEAF0001"     # serial number (20 chars)
    mn: str = "RedLeaf emulated NVMe"   # model number (40 chars)
    fr: str = "1.0"             # firmware revision (8 chars)
    rab: int = 6
    mdts: int = 7               # max data transfer = 2**mdts * min page size
    cntlid: int = 1
    ver: int = 0x00010400
    cntrltype: int = 1          # I/O controller
    oacs: int = 0               # optional admin commands
    acl: int = 3                # abort command limit (zero-based)
    aerl: int = 3               # async event request limit (zero-based)
    lpa: int = 0
    elpe: int = 0
    sqes: int = 0x66            # required/max SQ entry size: 2**6 = 64
    cqes: int = 0x44            # required/max CQ entry size: 2**4 = 16
    maxcmd: int = 0
    nn: int = 1                 # number of namespaces
    oncs: int = 1 << 3          # optional NVM commands: Write Zeroes
    vwc: int = 1                # volatile write cache present (Flush needed)
    sgls: int = 0               # SGLs not supported
    subnqn: str = "nqn.2024-01.org.redleaf:nvme:emulated"

    _LAYOUT = ((0, "<H", "vid"), (2, "<H", "ssvid"), (72, "<B", "rab"), (77, "<B", "mdts"),
               (78, "<H", "cntlid"), (80, "<I", "ver"), (111, "<B", "cntrltype"),
               (256, "<H", "oacs"), (258, "<B", "acl"), (259, "<B", "aerl"), (261, "<B", "lpa"),
               (262, "<B", "elpe"), (512, "<B", "sqes"), (513, "<B", "cqes"),
               (514, "<H", "maxcmd"), (516, "<I", "nn"), (520, "<H", "oncs"), (525, "<B", "vwc"),
               (536, "<I", "sgls"))

    def encode(self) -> bytes:
        b = bytearray(IDENTIFY_SIZE)
        for off, fmt, name in self._LAYOUT:
            struct.pack_into(fmt, b, off, getattr(self, name))
        b[4:24] = _ascii(self.sn, 20)
        b[24:64] = _ascii(self.mn, 40)
        b[64:72] = _ascii(self.fr, 8)
        nqn = self.subnqn.encode()[:255]
        b[768:768 + len(nqn)] = nqn
        return bytes(b)

    @classmethod
    def decode(cls, data) -> "IdentifyController":
        data = bytes(data[:IDENTIFY_SIZE])
        kw = {name: struct.unpack_from(fmt, data, off)[0] for off, fmt, name in cls._LAYOUT}
        kw["sn"] = data[4:24].decode("ascii", "replace").rstrip()
        kw["mn"] = data[24:64].decode("ascii", "replace").rstrip()
        kw["fr"] = data[64:72].decode("ascii", "replace").rstrip()
        kw["subnqn"] = data[768:1024].split(b"\0", 1)[0].decode("ascii", "replace")
        return cls(**kw)

    def max_transfer(self, min_page_size: int = 4096) -> int | None:
        """Maximum data transfer size in bytes, None when unlimited (MDTS = 0)."""
        return None if self.mdts == 0 else (1 << self.mdts) * min_page_size


class LbaFormat(NamedTuple):
    ms: int       # metadata bytes per LBA
    lbads: int    # LBA data size = 2**lbads
    rp: int       # relative performance


@dataclass
class IdentifyNamespace:
    nsze: int = 0      # namespace size in LBAs
    ncap: int = 0      # capacity in LBAs
    nuse: int = 0      # utilisation in LBAs
    nsfeat: int = 0
    nlbaf: int = 0     # number of LBA formats, zero-based
    flbas: int = 0     # bits 3:0 index of the LBA format in use
    dlfeat: int = 0
    lbaf: tuple = (LbaFormat(0, 12, 0),)

    def encode(self) -> bytes:
        b = bytearray(IDENTIFY_SIZE)
        struct.pack_into("<QQQBBB", b, 0, self.nsze, self.ncap, self.nuse, self.nsfeat,
                         self.nlbaf, self.flbas)
        b[33] = self.dlfeat
        for i, f in enumerate(self.lbaf[:16]):
            struct.pack_into("<I", b, 128 + 4 * i, (f.ms & 0xFFFF) | (f.lbads & 0xFF) << 16
                             | (f.rp & 3) << 24)
        return bytes(b)

    @classmethod
    def decode(cls, data) -> "IdentifyNamespace":
        data = bytes(data[:IDENTIFY_SIZE])
        nsze, ncap, nuse, nsfeat, nlbaf, flbas = struct.unpack_from("<QQQBBB", data, 0)
        lbaf = []
        for i in range(nlbaf + 1):
            v = struct.unpack_from("<I", data, 128 + 4 * i)[0]
            lbaf.append(LbaFormat(v & 0xFFFF, v >> 16 & 0xFF, v >> 24 & 3))
        return cls(nsze, ncap, nuse, nsfeat, nlbaf, flbas, data[33], tuple(lbaf))

    @property
    def lba_shift(self) -> int:
        return self.lbaf[self.flbas & 0xF].lbads

    @property
    def lba_size(self) -> int:
        return 1 << self.lba_shift
