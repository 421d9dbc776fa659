"""A test client for `Net`: sends checksummed, numbered frames and checks what comes
back.  Used by the integration tests over a real supervisor.

It keeps one pool of buffers (`free`) for both directions: RX submits give the
driver all free buffers (it takes what fits its ring), TX takes from what is left.
Every frame carries a sequence number and a CRC32 (redleaf.drivers.ixgbe.frames test frames);
`received` maps sequence -> count, `corrupt` counts frames that fail the check.
"""

from __future__ import annotations

import time

import numpy as np

from redleaf.drivers.ixgbe.frames import make_test_frame, parse_test_frame
from redleaf.drivers.net import Net, PacketOps

SRC = b"\x02\x00\x00\x00\x00\x01"
DST = b"\x02\x00\x00\x00\x00\x02"


class NetClient:
    def __init__(self, client, name: str, packets: int = 1024, batch: int = 32):
        self.ops = PacketOps(client.heap)
        self.net = client.lookup(name, Net)
        self.batch = batch
        self.free = self.ops.deque(packets + 1024, self.ops.alloc_packets(packets))
        self.rxd = self.ops.deque(256)
        self.txd = self.ops.deque(batch)
        self.done = self.ops.deque(packets + 1024)
        self.next_seq = 0
        self.written: set[int] = set()
        self.received: dict[int, int] = {}
        self.corrupt = 0
        self.headers: list[bytes] = []   # first 12 bytes of a few received frames
        self.rng = np.random.default_rng(7)

    def _frame_len(self, seq: int) -> int:
        return int((60, 64, 128, 333, 1000, 1514)[seq % 6])

    def send_some(self, n: int | None = None) -> int:
        """Fill up to `n` (default: batch) new frames and submit; returns how many the
        driver took."""
        ops = self.ops
        want = self.batch if n is None else n
        k = want - len(self.txd)
        if k > 0:
            offs = ops.take(self.free, k)
            for o in offs.tolist():
                seq = self.next_seq
                self.next_seq += 1
                f = make_test_frame(seq, self._frame_len(seq), DST, SRC)
                ops.mem[o:o + len(f)] = np.frombuffer(f, np.uint8)
                ops.set_lengths(np.array([o]), len(f))
                self.written.add(seq)
            ops.put(self.txd, offs)
        n, self.txd, self.done = self.net.submit_and_poll(self.txd, self.done, True)
        ops.transfer(self.done, self.free)
        return n

    def receive(self) -> int:
        ops = self.ops
        _n, self.free, self.rxd = self.net.submit_and_poll(self.free, self.rxd, False)
        offs = ops.peek(self.rxd)
        if offs.size:
            lens = ops.lengths(offs)
            for o, ln in zip(offs.tolist(), lens.tolist()):
                raw = ops.mem[o:o + ln].tobytes()
                seq = parse_test_frame(raw)
                if seq is None:
                    self.corrupt += 1
                else:
                    self.received[seq] = self.received.get(seq, 0) + 1
                    if len(self.headers) < 8:
                        self.headers.append(raw[:12])
            ops.transfer(self.rxd, self.free)
        # completed TX buffers come back on a TX poll
        _k, self.done = self.net.poll(self.done, True)
        ops.transfer(self.done, self.free)
        return int(offs.size)

    def drain(self, until, timeout: float = 10.0, quiet: float = 0.5) -> None:
        """receive() until `until()` holds, nothing arrived for `quiet` seconds (the
        rest was dropped), or `timeout` passes."""
        now = time.monotonic
        end = now() + timeout
        last = now()
        while not until() and now() < end and now() - last < quiet:
            if self.receive():
                last = now()
            else:
                time.sleep(0.0005)

    def run(self, total: int, window: int = 256, timeout: float = 30.0) -> None:
        """Send `total` frames keeping at most `window` unanswered, receiving meanwhile."""
        end = time.monotonic() + timeout
        self.receive()       # RX buffers first: frames that find the ring empty are dropped
        gone = self.next_seq - len(self.received)   # lost earlier (crashes): not outstanding
        while self.next_seq < total and time.monotonic() < end:
            if self.next_seq - len(self.received) - gone < window:
                self.send_some(min(self.batch, total - self.next_seq))
            if not self.receive():
                time.sleep(0.0002)
        self.drain(lambda: len(self.received) + gone >= self.next_seq - len(self.txd), timeout=5.0)

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.received.values() if c > 1)

    @property
    def foreign(self) -> int:
        """Received sequence numbers that were never sent."""
        return len(set(self.received) - self.written)
