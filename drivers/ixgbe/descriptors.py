"""82599 advanced RX/TX descriptors as numpy structured dtypes.

Every descriptor is 16 bytes, little endian.  A ring is viewed through several
dtypes at once (read format, write-back format, and raw ``u64``/``u32`` views);
the batch helpers below encode and decode whole index arrays with fancy
indexing, which is the hot path for both the driver and the device model.

RX, read format (driver -> device)::

    0   pkt_addr  u64    buffer address
    8   hdr_addr  u64    0 (header split unused); low bit overlaps DD, so writing
                         0 here clears the previous write-back status

RX, write-back format (device -> driver)::

    0   pkt_info  u16  | 2 hdr_info u16 | 4 rss u32
    8   status_error u32   (bit0 DD, bit1 EOP)
    12  length    u16
    14  vlan      u16

TX, read format (driver -> device)::

    0   buffer_addr   u64
    8   cmd_type_len  u32   DTALEN[15:0] | DTYP[23:20] | DCMD[31:24]
    12  olinfo_status u32   STA[3:0] (0) | ... | PAYLEN[31:14]

TX, write-back format (device -> driver)::

    0   rsvd u64
    8   nxtseq_seed u32
    12  status u32       (bit0 DD)
"""
from __future__ import annotations

import numpy as np

DESC_SIZE = 16
RING_ALIGN = 128          # ring base alignment and length granularity (bytes)

# ---- RX
RXD_STAT_DD = 0x01
RXD_STAT_EOP = 0x02

RX_READ = np.dtype([("pkt_addr", "<u8"), ("hdr_addr", "<u8")])
RX_WB = np.dtype([("pkt_info", "<u2"), ("hdr_info", "<u2"), ("rss", "<u4"),
                  ("status_error", "<u4"), ("length", "<u2"), ("vlan", "<u2")])

# ---- TX
TXD_DTALEN_MASK = 0x0000FFFF
TXD_DTYP_MASK = 0x00F00000
TXD_DTYP_DATA = 0x00300000          # advanced data descriptor
TXD_DCMD_EOP = 0x01000000
TXD_DCMD_IFCS = 0x02000000
TXD_DCMD_RS = 0x08000000
TXD_DCMD_DEXT = 0x20000000
TXD_PAYLEN_SHIFT = 14
TXD_STAT_DD = 0x01
TX_CMD_DEFAULT = TXD_DCMD_EOP | TXD_DCMD_RS | TXD_DCMD_IFCS | TXD_DCMD_DEXT | TXD_DTYP_DATA

TX_READ = np.dtype([("buffer_addr", "<u8"), ("cmd_type_len", "<u4"), ("olinfo_status", "<u4")])
TX_WB = np.dtype([("rsvd", "<u8"), ("nxtseq_seed", "<u4"), ("status", "<u4")])

for _dt in (RX_READ, RX_WB, TX_READ, TX_WB):
    assert _dt.itemsize == DESC_SIZE


class RingView:
    """Typed numpy views of one descriptor ring held in a byte buffer.

    ``q`` is (n, 2) u64, ``d`` is (n, 4) u32, ``h`` is (n, 8) u16, and ``rx_read``,
    ``rx_wb``, ``tx_read``, ``tx_wb`` are the structured views.  All alias the
    same memory.
    """

    __slots__ = ("n", "raw", "q", "d", "h", "rx_read", "rx_wb", "tx_read", "tx_wb")

    def __init__(self, buf, offset: int, count: int):
        raw = np.frombuffer(buf, dtype=np.uint8, count=count * DESC_SIZE, offset=offset)
        self.n = count
        self.raw = raw
        self.q = raw.view("<u8").reshape(count, 2)
        self.d = raw.view("<u4").reshape(count, 4)
        self.h = raw.view("<u2").reshape(count, 8)
        self.rx_read = raw.view(RX_READ)
        self.rx_wb = raw.view(RX_WB)
        self.tx_read = raw.view(TX_READ)
        self.tx_wb = raw.view(TX_WB)


def ring_indices(start: int, count: int, n: int) -> np.ndarray:
    """Ring slots start, start+1, ... (count of them) modulo n."""
    idx = np.arange(start, start + count, dtype=np.int64)
    if start + count > n:
        idx %= n
    return idx


# ------------------------------------------------------------------ RX batch helpers
def rx_encode_read(ring: RingView, idx: np.ndarray, pkt_addr: np.ndarray) -> None:
    """Driver: give buffers to the device (hdr_addr = 0 clears DD)."""
    ring.q[idx, 0] = pkt_addr
    ring.q[idx, 1] = 0


def rx_decode_read(ring: RingView, idx: np.ndarray) -> np.ndarray:
    """Device: buffer addresses of the given descriptors."""
    return ring.q[idx, 0]


def rx_encode_wb(ring: RingView, idx: np.ndarray, length: np.ndarray,
                 status: int | np.ndarray = RXD_STAT_DD | RXD_STAT_EOP) -> None:
    """Device: write back length, then status (DD last, as the hardware orders it)."""
    ring.q[idx, 0] = 0
    ring.d[idx, 3] = np.asarray(length, dtype=np.uint32) & 0xFFFF   # length | vlan 0
    ring.d[idx, 2] = status


def rx_decode_wb(ring: RingView, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Driver: (status_error, length) of the given descriptors."""
    return ring.d[idx, 2], ring.h[idx, 6]


# ------------------------------------------------------------------ TX batch helpers
def tx_encode_read(ring: RingView, idx: np.ndarray, addr: np.ndarray, length: np.ndarray,
                   cmd: int = TX_CMD_DEFAULT) -> None:
    """Driver: one single-buffer frame per descriptor (EOP|RS|IFCS, advanced data)."""
    length = np.asarray(length, dtype=np.uint32)
    ring.q[idx, 0] = addr
    ring.d[idx, 2] = length | cmd
    ring.d[idx, 3] = length << TXD_PAYLEN_SHIFT


def tx_decode_read(ring: RingView, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Device: (buffer_addr, cmd_type_len, olinfo_status)."""
    return ring.q[idx, 0], ring.d[idx, 2], ring.d[idx, 3]


def tx_encode_wb(ring: RingView, idx: np.ndarray) -> None:
    """Device: write back DD."""
    ring.d[idx, 2] = 0
    ring.d[idx, 3] = TXD_STAT_DD


def tx_decode_wb(ring: RingView, idx: np.ndarray) -> np.ndarray:
    """Driver: status words of the given descriptors."""
    return ring.d[idx, 3]


def ring_get(col: np.ndarray, start: int, count: int, n: int) -> np.ndarray:
    """col[start], col[start+1], ... (count of them, modulo n) of a ring column: a
    view when they do not wrap, else a copy (two slices, no index array)."""
    end = start + count
    if end <= n:
        return col[start:end]
    return np.concatenate((col[start:], col[:end - n]))


def ring_set(col: np.ndarray, start: int, values, n: int) -> None:
    """col[(start + i) % n] = values[i] (or = values, a scalar, for `count` slots
    when `values` is a (count, scalar) tuple) with at most two slice writes."""
    if type(values) is tuple:
        count, v = values
        end = start + count
        if end <= n:
            col[start:end] = v
        else:
            col[start:] = v
            col[:end - n] = v
        return
    end = start + len(values)
    if end <= n:
        col[start:end] = values
    else:
        c = n - start
        col[start:] = values[:c]
        col[:end - n] = values[c:]


def ring_segments(start: int, count: int, n: int) -> tuple:
    """Ring slots start, start+1, ... (count of them, modulo n) as at most two
    (slots, lo, hi) pieces, `slots` a slice: the batch codecs above take a slice
    where they take an index array, and slots get the batch's values[lo:hi]."""
    end = start + count
    if end <= n:
        return ((slice(start, end), 0, count),)
    c = n - start
    return ((slice(start, n), 0, c), (slice(0, end - n), c, count))


def byte_rows(mem: np.ndarray, width: int) -> np.ndarray:
    """A view of the uint8 array `mem` whose row a is mem[a:a + width]: a batch of
    frames (or headers) at arbitrary offsets moves with one gather or scatter of
    rows, with no (batch, width) index array to build."""
    return np.lib.stride_tricks.as_strided(mem, shape=(mem.size - width + 1, width), strides=(1, 1))


def leading_true(mask: np.ndarray) -> int:
    """Length of the run of True at the start of a boolean array."""
    if mask.size == 0:
        return 0
    if mask[-1] and mask.all():
        return int(mask.size)
    return int(np.argmin(mask))
