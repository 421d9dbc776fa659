"""Pluggable wires for the emulated 82599.

A wire is what the NIC's MAC sees: it hands transmitted frames to the wire and
takes received frames from it.  Frames carry no FCS (the NIC adds/strips it).

Interface (duck typed, see :class:`Wire`)::

    send(frames: Sequence[bytes | memoryview]) -> None   # never blocks; a full wire drops
    recv(max: int) -> list[bytes]                        # never blocks; [] if nothing
    fileno() -> int | None                               # readable when recv has work; None: poll
    close() -> None

Backends:

* :class:`LoopbackWire` -- TX comes back as RX (in process).
* :func:`pair` -- two in-process endpoints cabled together (deques).
* :func:`socket_cable` -- two endpoints over an AF_UNIX SOCK_SEQPACKET socketpair;
  each end can live in a different process (pass the fd, rebuild with
  :meth:`SocketWire.from_fd`).
* :class:`ShmCable` / :class:`ShmWire` -- two endpoints over single-producer /
  single-consumer rings in a shared-memory file (no syscalls, no locks; each
  word has a single writer, so a killed endpoint leaves the cable usable).
* :class:`PktGenWire` -- MoonGen-like generator (recv) and counting sink (send).
* :class:`UdpWire` -- one frame per UDP datagram, 127.0.0.1 only.
* :class:`TapWire` in a :class:`NetNamespace` -- a Linux TAP device inside a
  network namespace the project creates and deletes.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import mmap
import os
import shutil
import socket
import struct
import subprocess
import time
import zlib
from typing import Protocol, Sequence

import numpy as np

MAX_FRAME = 9216   # largest frame any wire carries


class WireUnavailable(RuntimeError):
    """The backend cannot be created here (permissions, missing device...)."""


class Wire(Protocol):
    def send(self, frames: Sequence[bytes | memoryview]) -> None: ...
    def recv(self, max: int) -> list[bytes]: ...
    def fileno(self) -> int | None: ...
    def close(self) -> None: ...


class _Counters:
    tx_frames = 0      # frames accepted by send()
    rx_frames = 0      # frames returned by recv()
    tx_dropped = 0     # frames send() could not place (wire full)

    def counters(self) -> dict:
        return {"tx_frames": self.tx_frames, "rx_frames": self.rx_frames,
                "tx_dropped": self.tx_dropped}


# ============================================================== in-process queues
class QueueWire(_Counters):
    """An endpoint that sends into one deque and receives from another."""

    def __init__(self, txq: collections.deque, rxq: collections.deque, capacity: int = 1 << 16):
        self._txq = txq
        self._rxq = rxq
        self.capacity = capacity
        self.closed = False

    def send(self, frames):
        if self.closed:
            self.tx_dropped += len(frames)
            return
        room = self.capacity - len(self._txq)
        n = len(frames)
        if n > room:
            self.tx_dropped += n - max(room, 0)
            frames = frames[:max(room, 0)]
        self._txq.extend(bytes(f) for f in frames)
        self.tx_frames += len(frames)

    def recv(self, max):
        q = self._rxq
        if not q:
            return []
        if len(q) <= max:
            out = list(q)
            q.clear()
        else:
            pop = q.popleft
            out = [pop() for _ in range(max)]
        self.rx_frames += len(out)
        return out

    def pending(self) -> int:
        return len(self._rxq)

    def fileno(self):
        return None

    def close(self):
        self.closed = True


class LoopbackWire(QueueWire):
    """TX comes back as RX."""

    def __init__(self, capacity: int = 1 << 16):
        q: collections.deque = collections.deque()
        super().__init__(q, q, capacity)


def pair(capacity: int = 1 << 16) -> tuple[QueueWire, QueueWire]:
    """Two in-process endpoints of one cable."""
    a: collections.deque = collections.deque()
    b: collections.deque = collections.deque()
    return QueueWire(a, b, capacity), QueueWire(b, a, capacity)


# ============================================================== socketpair cable
class SocketWire(_Counters):
    """One end of a datagram cable (AF_UNIX SOCK_SEQPACKET or a UDP socket)."""

    def __init__(self, sock: socket.socket, peer=None):
        sock.setblocking(False)
        self.sock = sock
        self.peer = peer

    @classmethod
    def from_fd(cls, fd: int) -> "SocketWire":
        """Rebuild an end in another process from an inherited/passed fd."""
        return cls(socket.socket(fileno=fd))

    def send(self, frames):
        s = self.sock
        sent = 0
        try:
            if self.peer is None:
                for f in frames:
                    s.send(f)
                    sent += 1
            else:
                for f in frames:
                    s.sendto(f, self.peer)
                    sent += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise
        self.tx_frames += sent
        self.tx_dropped += len(frames) - sent

    def recv(self, max):
        out = []
        r = self.sock.recv
        try:
            while len(out) < max:
                f = r(MAX_FRAME)
                if not f:      # the peer closed its end (EOF), or an empty datagram:
                    break      # no frame either way (it used to be returned as one)
                out.append(f)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        self.rx_frames += len(out)
        return out

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


def socket_cable(bufsize: int = 1 << 20) -> tuple[SocketWire, SocketWire]:
    """Two ends of a cable over a SOCK_SEQPACKET socketpair (one frame per datagram).

    The ends are plain fds, so each can be inherited by (or SCM_RIGHTS-passed to)
    a different process.
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        except OSError:
            pass
    return SocketWire(a), SocketWire(b)


# ============================================================== shared-memory cable
class ShmCable:
    """Layout of a shared-memory cable file: two SPSC rings of fixed-size slots.

    Header (4 KiB): magic, slots, slot_size; for direction d (0: end0->end1,
    1: end1->end0) a producer-written ``head`` u64 at 64+128*d and a
    consumer-written ``tail`` u64 at 128+128*d.  Slot = u32 length + data.
    """

    MAGIC = 0x52_4C_43_42   # "RLCB"
    HDR = 4096

    @staticmethod
    def size(slots: int, slot_size: int) -> int:
        return ShmCable.HDR + 2 * slots * slot_size

    @staticmethod
    def create(path: str, slots: int = 4096, slot_size: int = 2048) -> None:
        if slot_size % 8 or slot_size < 64:
            raise ValueError("slot_size must be a multiple of 8 and >= 64")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, ShmCable.size(slots, slot_size))
            os.pwrite(fd, struct.pack("<III", ShmCable.MAGIC, slots, slot_size), 0)
        finally:
            os.close(fd)


class ShmWire(_Counters):
    """One end (0 or 1) of a :class:`ShmCable` file.  fileno() is None: poll it."""

    def __init__(self, path: str, end: int):
        if end not in (0, 1):
            raise ValueError("end must be 0 or 1")
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        magic, slots, slot_size = struct.unpack_from("<III", self._mm, 0)
        if magic != ShmCable.MAGIC:
            raise ValueError(f"{path} is not a cable file")
        self.slots, self.slot_size = slots, slot_size
        self._mv = memoryview(self._mm)
        self._q = self._mv.cast("Q")
        self._tx_head = (64 + 128 * end) >> 3
        self._tx_tail = (128 + 128 * end) >> 3
        self._rx_head = (64 + 128 * (1 - end)) >> 3
        self._rx_tail = (128 + 128 * (1 - end)) >> 3
        self._tx_data = ShmCable.HDR + end * slots * slot_size
        self._rx_data = ShmCable.HDR + (1 - end) * slots * slot_size
        self._len = np.frombuffer(self._mm, dtype="<u4")   # for lengths via fancy indexing

    def send(self, frames):
        q = self._q
        head = q[self._tx_head]
        free = self.slots - (head - q[self._tx_tail])
        n = min(len(frames), free)
        mv, S, base, slots = self._mv, self.slot_size, self._tx_data, self.slots
        maxlen = S - 4
        put = 0
        for i in range(n):
            f = frames[i]
            ln = len(f)
            if ln > maxlen:
                self.tx_dropped += 1
                continue
            off = base + ((head + put) % slots) * S
            mv[off + 4: off + 4 + ln] = f
            self._len[off >> 2] = ln
            put += 1
        q[self._tx_head] = head + put          # publish after the data
        self.tx_frames += put
        self.tx_dropped += len(frames) - n

    def recv(self, max):
        q = self._q
        tail = q[self._rx_tail]
        n = min(max, q[self._rx_head] - tail)
        if n <= 0:
            return []
        mm, S, base, slots, L = self._mm, self.slot_size, self._rx_data, self.slots, self._len
        out = []
        for i in range(n):
            off = base + ((tail + i) % slots) * S
            out.append(mm[off + 4: off + 4 + int(L[off >> 2])])
        q[self._rx_tail] = tail + n
        self.rx_frames += n
        return out

    def fileno(self):
        return None

    def close(self):
        try:
            self._len = None
            self._q.release()
            self._mv.release()
            self._mm.close()
        except (BufferError, ValueError):
            pass


# ============================================================== test frames
ETH_TYPE_TEST = 0x88B5          # IEEE local experimental ethertype


def make_test_frame(seq: int, length: int, dst: bytes = b"\x02\x00\x00\x00\x00\x02",
                    src: bytes = b"\x02\x00\x00\x00\x00\x01") -> bytes:
    """A frame with a sequence number and a CRC32 trailer over everything before it."""
    if length < 36:
        raise ValueError("test frames are at least 36 bytes")
    body = bytearray(length - 4)
    body[0:6] = dst
    body[6:12] = src
    body[12:14] = ETH_TYPE_TEST.to_bytes(2, "big")
    struct.pack_into("<IQ", body, 14, length, seq)
    r = (seq * 2654435761) & 0xFF
    pat = bytes((r + i) & 0xFF for i in range(256))
    n = length - 4 - 26
    body[26:] = (pat * (n // 256 + 1))[:n]
    return bytes(body) + struct.pack("<I", zlib.crc32(body[12:]))


def parse_test_frame(frame) -> int | None:
    """Sequence number of an intact test frame, None if corrupted/foreign.

    The CRC covers everything from the ethertype on (the MACs may be rewritten
    by a forwarder).
    """
    frame = bytes(frame)
    if len(frame) < 36 or frame[12:14] != ETH_TYPE_TEST.to_bytes(2, "big"):
        return None
    if zlib.crc32(frame[12:-4]) != struct.unpack_from("<I", frame, len(frame) - 4)[0]:
        return None
    ln, seq = struct.unpack_from("<IQ", frame, 14)
    if ln != len(frame):
        return None
    return seq


# ============================================================== pktgen
class SeqSeen:
    """The set of sequence numbers a sink has seen, for duplicate and loss counts.

    Why not one bool array indexed by sequence number: it must grow with the run, and
    each doubling copies the whole array inside the device's process() call (a 10 s
    forwarding run stalled the NIC for 30, 50, 100, then 215 ms, which is what the
    benchmarks then measured).  Here the numbers live in chunks of 2**20 flags,
    allocated as needed, and only the newest KEEP chunks are kept: a frame comes back
    within a few ring-fulls of being generated, so a number older than that (`late`)
    is counted with the duplicates rather than remembered for ever.
    """

    BITS = 20
    KEEP = 8

    def __init__(self):
        self.chunks: dict[int, np.ndarray] = {}
        self.distinct = 0       # numbers seen at least once
        self.top = -1           # highest number seen
        self.floor = 0          # chunks below this one are forgotten
        self.late = 0           # arrivals below the floor (counted as duplicates)

    def _chunk(self, c: int) -> np.ndarray:
        ch = self.chunks.get(c)
        if ch is None:
            ch = self.chunks[c] = np.zeros(1 << self.BITS, dtype=bool)
            floor = c - self.KEEP + 1
            if floor > self.floor:
                for old in [k for k in self.chunks if k < floor]:
                    del self.chunks[old]
                self.floor = floor
        return ch

    def add_new(self, seqs: np.ndarray) -> None:
        """Record `seqs`, strictly increasing and all above `top` (the sink's fast path)."""
        mask = (1 << self.BITS) - 1
        c0, c1 = int(seqs[0]) >> self.BITS, int(seqs[-1]) >> self.BITS
        if c0 == c1:
            self._chunk(c0)[seqs & mask] = True
        else:
            cs = seqs >> self.BITS
            for c in range(c0, c1 + 1):
                self._chunk(c)[seqs[cs == c] & mask] = True
        self.distinct += int(seqs.size)
        self.top = int(seqs[-1])

    def add(self, seqs: np.ndarray) -> int:
        """Record any `seqs` (int64); returns how many were duplicates (of each other,
        of numbers seen before, or too late to tell)."""
        uniq = np.unique(seqs)
        dups = int(seqs.size - uniq.size)
        mask = (1 << self.BITS) - 1
        cs = uniq >> self.BITS
        for c in np.unique(cs).tolist():
            sel = uniq[cs == c]
            if c < self.floor:
                self.late += int(sel.size)
                dups += int(sel.size)
                continue
            ch = self._chunk(c)
            seen = int(np.count_nonzero(ch[sel & mask]))
            dups += seen
            self.distinct += int(sel.size) - seen
            ch[sel & mask] = True
        self.top = max(self.top, int(uniq[-1]))
        return dups

    def lost(self) -> int:
        """Numbers below the highest seen that never arrived."""
        return self.top + 1 - self.distinct


class PktGenWire(_Counters):
    """A MoonGen-like traffic generator (what the NIC receives) and counting sink
    (what the NIC transmits).

    Frames are ``frame_size`` bytes handed to the NIC (default 60: a 64-byte
    Ethernet frame once the NIC appends the FCS).  Layout: dst(6) src(6)
    ethertype 0x88B5, u16 magic 0x524C, u64 seq at 16, u64 check at 24
    (= seq * K ^ SALT), then a fixed pattern.  Generation writes seq/check into a
    pre-built template with numpy; the sink checks a whole batch at once.

    ``rate_pps`` limits generation (token bucket, burst ``burst``); ``count``
    stops after that many frames.  Sink counters: ``sink_frames``, ``sink_bad``
    (check or pattern mismatch), ``sink_dup``, ``sink_reordered``,
    :meth:`sink_lost` (gaps below the highest sequence seen) and, in
    :meth:`sink_stats`, ``missing`` (generated here but never came back).
    """

    K = np.uint64(0x9E3779B97F4A7C15)
    SALT = np.uint64(0x5A5A_1234_ABCD_0F0F)
    MAGIC = 0x524C

    def __init__(self, rate_pps: float | None = None, frame_size: int = 60,
                 count: int | None = None, burst: int = 1024,
                 dst: bytes = b"\x02\x00\x00\x00\x00\x02", src: bytes = b"\x02\x00\x00\x00\x00\x01",
                 max_batch: int = 1024, clock=time.monotonic):
        if frame_size < 32 or frame_size > MAX_FRAME:
            raise ValueError("frame_size must be 32..9216")
        self.frame_size = frame_size
        self.rate = rate_pps
        self.count = count
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.next_seq = 0
        t = np.zeros(frame_size, dtype=np.uint8)
        t[0:6] = np.frombuffer(dst, np.uint8)
        t[6:12] = np.frombuffer(src, np.uint8)
        t[12:14] = (ETH_TYPE_TEST >> 8, ETH_TYPE_TEST & 0xFF)
        t[14:16] = (self.MAGIC & 0xFF, self.MAGIC >> 8)
        t[32:] = (np.arange(frame_size - 32) * 7 + 3) & 0xFF
        self.template = t
        self._buf = np.tile(t, (max_batch, 1))
        self.max_batch = max_batch
        # the seq and check fields of every row of _buf, as (unaligned) u64 columns
        self._seq_col = np.ndarray((max_batch,), dtype="<u8", buffer=self._buf, offset=16, strides=(frame_size,))
        self._check_col = np.ndarray((max_batch,), dtype="<u8", buffer=self._buf, offset=24,
                                     strides=(frame_size,))
        self._seq_ar = np.arange(max_batch, dtype=np.uint64)
        if frame_size % 4 == 0:                   # the sink's whole-batch pattern check
            words = t[12:].view("<u4")
            mask = np.full(words.size, 0xFFFFFFFF, dtype=np.uint32)
            mask[1:5] = 0                         # seq and check vary
            self._pat_mask = np.tile(mask, (256, 1))
            self._pat_exp = np.tile(words & mask, (256, 1))
        # sink state
        self.sink_frames = 0
        self.sink_bytes = 0
        self.sink_bad = 0
        self.sink_dup = 0
        self.sink_reordered = 0
        self._seen = SeqSeen()

    # ---- generator side: the NIC receives these
    def recv(self, max):
        b = self.recv_array(max)
        n = b.shape[0]
        if not n:
            return []
        raw = b.tobytes()
        s = self.frame_size
        return [raw[i:i + s] for i in range(0, n * s, s)]

    def _avail(self, max) -> int:
        """How many frames the generator offers now (at most `max`); takes their tokens."""
        n = max
        if self.count is not None:
            n = min(n, self.count - self.next_seq)
        if self.rate is not None:
            now = self.clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            n = min(n, int(self._tokens))
            if n > 0:
                self._tokens -= n
        return n

    def recv_array(self, max) -> np.ndarray:
        """recv() as one (n, frame_size) uint8 array (a view, valid until the next
        call): the NIC's vectorised RX path takes it without a bytes object per frame."""
        n = self._avail(min(max, self.max_batch))
        if n <= 0:
            return self._buf[:0]
        seqs = self._seq_ar[:n] + np.uint64(self.next_seq)
        self.next_seq += n
        self._seq_col[:n] = seqs
        np.multiply(seqs, self.K, out=seqs)
        np.bitwise_xor(seqs, self.SALT, out=self._check_col[:n])
        self.rx_frames += n
        return self._buf[:n]

    def drop(self, max) -> int:
        """Frames that arrive while the NIC has nowhere to put them (no free RX
        descriptor): they take their sequence numbers and tokens, as if received
        and dropped, but are never built.  Returns how many (at most `max`)."""
        n = self._avail(max)
        if n <= 0:
            return 0
        self.next_seq += n
        self.rx_frames += n
        return n

    # ---- sink side: the NIC transmits into this
    def send(self, frames):
        n = len(frames)
        if not n:
            return
        self.tx_frames += n
        s = self.frame_size
        good_len = [f for f in frames if len(f) == s]
        self.sink_bad += n - len(good_len)
        if not good_len:
            return
        m = len(good_len)
        self._sink(np.frombuffer(b"".join(good_len), dtype=np.uint8).reshape(m, s))

    def send_array(self, a: np.ndarray) -> None:
        """send() of frames given as one (n, length) uint8 array (the NIC's
        vectorised TX path)."""
        n = a.shape[0]
        if not n:
            return
        self.tx_frames += n
        if a.shape[1] != self.frame_size:
            self.sink_bad += n
            return
        self._sink(a)

    def _sink(self, a: np.ndarray) -> None:
        """Check and count frames of the right length, one per row of `a`.

        Fast path for the usual batch (every frame intact, sequence numbers rising
        and all above those seen): the same checks in a few whole-batch operations;
        anything else goes through `_sink_any`, which classifies frame by frame."""
        m, s = a.shape
        if not m:
            return
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        seqs = np.ndarray((m,), dtype="<u8", buffer=a, offset=16, strides=(s,)).copy()
        check = np.ndarray((m,), dtype="<u8", buffer=a, offset=24, strides=(s,))
        if (int(seqs[0]) > self._seen.top
                and np.count_nonzero(check == (seqs * self.K) ^ self.SALT) == m
                and self._pattern_ok(a)
                and (m == 1 or np.count_nonzero(seqs[1:] > seqs[:-1]) == m - 1)):
            self._seen.add_new(seqs.view(np.int64))   # all new: above every sequence seen
            self.sink_frames += m
            self.sink_bytes += m * s
            return
        self._sink_any(a)

    def _pattern_ok(self, a: np.ndarray) -> bool:
        """Every row of `a` (contiguous) has the template's bytes 12..16 and 32..end."""
        m, s = a.shape
        if s % 4:
            return (np.count_nonzero(a[:, 12:16] != self.template[12:16]) == 0
                    and np.count_nonzero(a[:, 32:] != self.template[32:]) == 0)
        if m > self._pat_exp.shape[0]:
            self._pat_mask = np.tile(self._pat_mask[0], (m, 1))
            self._pat_exp = np.tile(self._pat_exp[0], (m, 1))
        # bytes 12.. as u32 words; the seq and check words (bytes 16..32) masked out
        v = np.ndarray((m, (s - 12) // 4), dtype="<u4", buffer=a, offset=12, strides=(s, 4))
        return np.count_nonzero((v & self._pat_mask[:m]) != self._pat_exp[:m]) == 0

    def _sink_any(self, a: np.ndarray) -> None:
        """Check and count frames of the right length, one per row of `a`."""
        m, s = a.shape
        seqs = a[:, 16:24].copy().view("<u8").ravel()
        check = a[:, 24:32].copy().view("<u8").ravel()
        ok = check == ((seqs * self.K) ^ self.SALT)
        ok &= (a[:, 12:16] == self.template[12:16]).all(axis=1)
        ok &= (a[:, 32:] == self.template[32:]).all(axis=1)
        self.sink_bad += int(m - ok.sum())
        seqs = seqs[ok].astype(np.int64)
        if seqs.size == 0:
            return
        self.sink_frames += int(seqs.size)
        self.sink_bytes += int(seqs.size) * s
        prev = np.concatenate(([self._seen.top], np.maximum.accumulate(seqs)[:-1]))
        self.sink_reordered += int((seqs < prev).sum())
        self.sink_dup += self._seen.add(seqs)

    @property
    def sink_max_seq(self) -> int:
        """The highest sequence number seen (-1: none yet)."""
        return self._seen.top

    def sink_lost(self) -> int:
        """Sequence numbers below the highest seen that never arrived."""
        return self._seen.lost()

    def sink_stats(self) -> dict:
        return {"frames": self.sink_frames, "bytes": self.sink_bytes, "bad": self.sink_bad,
                "dup": self.sink_dup, "reordered": self.sink_reordered, "lost": self.sink_lost(),
                "generated": self.next_seq,
                "missing": self.next_seq - (self.sink_frames - self.sink_dup)}

    def fileno(self):
        return None

    def close(self):
        pass


# ============================================================== UDP on 127.0.0.1
LOCALHOST = "127.0.0.1"


class UdpWire(SocketWire):
    """One frame per UDP datagram between ports of 127.0.0.1 -- never any other address."""

    def __init__(self, local_port: int = 0, peer_port: int | None = None, host: str = LOCALHOST):
        if host != LOCALHOST:
            raise ValueError("UdpWire only carries frames on 127.0.0.1")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        except OSError:
            pass
        s.bind((LOCALHOST, local_port))
        super().__init__(s, None)
        self.port = s.getsockname()[1]
        if peer_port is not None:
            self.connect(peer_port)

    def connect(self, peer_port: int) -> None:
        """Cable this end to 127.0.0.1:peer_port (datagrams from elsewhere are refused by the kernel)."""
        if not 0 < peer_port < 65536:
            raise ValueError("bad port")
        self.sock.connect((LOCALHOST, peer_port))
        self.peer_port = peer_port


def udp_pair() -> tuple[UdpWire, UdpWire]:
    a = UdpWire()
    b = UdpWire(peer_port=a.port)
    a.connect(b.port)
    return a, b


# ============================================================== TAP in a netns
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def _run_ip(*args: str) -> None:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    r = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise WireUnavailable(f"`ip {' '.join(args)}` failed: {r.stderr.strip()} "
                              "(needs root or CAP_NET_ADMIN and iproute2)")


class NetNamespace:
    """A network namespace created with ``ip netns add`` and removed by close()."""

    def __init__(self, name: str):
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("bad namespace name")
        if os.geteuid() != 0:
            raise WireUnavailable("creating a network namespace needs root (or CAP_SYS_ADMIN "
                                  "and CAP_NET_ADMIN); run as root or use another wire")
        if not shutil.which("ip") and not os.path.exists("/usr/sbin/ip"):
            raise WireUnavailable("the `ip` command (iproute2) is needed for the tap wire")
        self.name = name
        _run_ip("netns", "add", name)
        self.closed = False

    def exec(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
        ip = shutil.which("ip") or "/usr/sbin/ip"
        return subprocess.run([ip, "netns", "exec", self.name, *cmd],
                              capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            ip = shutil.which("ip") or "/usr/sbin/ip"
            subprocess.run([ip, "netns", "del", self.name], capture_output=True, timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TapWire(SocketWire):
    """A TAP device moved into ``netns`` and configured there with ``addr``.

    Frames the kernel in the namespace sends out of the tap are what the NIC
    receives; frames the NIC transmits are injected into the namespace.
    """

    def __init__(self, netns: NetNamespace, ifname: str = "rltap0", addr: str | None = "10.77.0.1/24",
                 own_netns: bool = False):
        """`own_netns`: close() also removes the namespace (a device that made it for
        its wire); otherwise the caller keeps it."""
        self.own_netns = own_netns
        if not os.path.exists("/dev/net/tun"):
            raise WireUnavailable("/dev/net/tun is missing (load the tun module or run in a "
                                  "container with the device)")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except PermissionError as e:
            raise WireUnavailable(f"cannot open /dev/net/tun ({e}); needs root or CAP_NET_ADMIN") from e
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(fd)
            raise WireUnavailable(f"TUNSETIFF {ifname} failed ({e}); needs CAP_NET_ADMIN") from e
        self.fd = fd
        self.ifname = ifname
        self.netns = netns
        try:
            _run_ip("link", "set", "dev", ifname, "netns", netns.name)
            if addr:
                _run_ip("-n", netns.name, "addr", "add", addr, "dev", ifname)
            _run_ip("-n", netns.name, "link", "set", "dev", ifname, "up")
            _run_ip("-n", netns.name, "link", "set", "dev", "lo", "up")
        except Exception:
            os.close(fd)
            raise
        self.tx_frames = self.rx_frames = self.tx_dropped = 0

    def send(self, frames):
        w = os.write
        sent = 0
        for f in frames:
            try:
                w(self.fd, f)
                sent += 1
            except (BlockingIOError, OSError):
                pass
        self.tx_frames += sent
        self.tx_dropped += len(frames) - sent

    def recv(self, max):
        out = []
        r = os.read
        try:
            while len(out) < max:
                out.append(r(self.fd, MAX_FRAME))
        except BlockingIOError:
            pass
        self.rx_frames += len(out)
        return out

    def fileno(self):
        return self.fd

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.own_netns:
            self.netns.close()
