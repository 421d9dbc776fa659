"""Test-frame codec and the sequence-number tracker, shared by wires, the traffic
generator, tests and clients that check what crossed a wire.

Owns: the test-frame format (ethertype 0x88B5, a sequence number, a CRC32 trailer)
and SeqSeen (which sequence numbers arrived: duplicates and losses).
Calls: numpy and zlib only; imports nothing of ours.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

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
