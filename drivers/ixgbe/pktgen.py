"""The traffic generator/sink wire (MoonGen-like): what the NIC receives is generated
here, what it transmits is checked and counted here.

Owns: PktGenWire (generation with a token bucket, the sink's counters).
Calls: wire (the wire contract: _Counters, MAX_FRAME) and frames (the test ethertype,
SeqSeen) -- downward only.
"""
from __future__ import annotations

import time

import numpy as np

from .frames import ETH_TYPE_TEST, SeqSeen
from .wire import MAX_FRAME, _Counters


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

    def poll_s(self) -> float | None:
        """Seconds until the generator offers a frame (0: now; None: never again)."""
        if self.count is not None and self.next_seq >= self.count:
            return None
        if self.rate is None:
            return 0.0
        need = 1.0 - (self._tokens + (self.clock() - self._last) * self.rate)
        return max(need / self.rate, 0.0) if need > 0 else 0.0

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

    def discard(self, max) -> int:
        """Frames that arrive while the NIC has nowhere to put them (no free RX
        descriptor): they take their sequence numbers and tokens, as if received
        and dropped, but are never built.  Returns how many (at most `max`), each
        `frame_size` bytes."""
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
