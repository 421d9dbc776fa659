"""Packet applications over any `Net`: receive, transmit, forward (ixy-fwd style).

The same code runs inside the driver domain (its `Net` is the driver object itself:
plain method calls) and in another domain (its `Net` is a proxy: every
submit_and_poll crosses the boundary, moving two deques).  That is RedLeaf's
comparison of the two configurations: only the crossing differs.

The application owns a pool of Packets.  Two deques carry them: `free` (empty
buffers, given to the driver for RX, and where TX-completed buffers come back) and
`work` (capacity = the batch: what was received, then what is sent).  No packet is
copied; forwarding rewrites the MACs in place with one numpy gather and scatter.
"""

from __future__ import annotations

import time

import numpy as np

from redleaf.drivers.net import Net, NetError, PacketOps

from .l2fwd import forward

FRAME = 60  # a 64-byte Ethernet frame once the NIC appends the FCS


class PacketLoop:
    def __init__(self, ops: PacketOps, net: Net, packets: int = 2048, batch: int = 32):
        if not 1 <= batch <= 4096:
            raise ValueError(f"batch must be 1..4096, got {batch}")
        self.ops = ops
        self.net = net
        self.batch = batch
        self.npackets = packets
        self.allocated = ops.alloc_packets(packets)
        self.free = ops.deque(packets, self.allocated)
        self.work = ops.deque(batch)
        self.received = self.sent = self.dropped = self.errors = 0

    def close(self) -> None:
        for dq in (self.free, self.work):
            if dq.alive:
                dq.drop()

    def replenish(self) -> int:
        """After a driver crash took buffers with it: allocate new deques/packets so
        the application again owns `npackets` buffers.  Returns how many were lost."""
        ops = self.ops
        have = []
        for dq in (self.free, self.work):
            if dq.alive:
                have.append(ops.take(dq))
                dq.drop()
        have = np.concatenate(have) if have else np.empty(0, np.int64)
        lost = self.npackets - have.size
        if lost > 0:
            fresh = ops.alloc_packets(lost)
            self.allocated = np.concatenate([self.allocated, fresh])
            have = np.concatenate([have, fresh])
        self.free = ops.deque(self.npackets, have)
        self.work = ops.deque(self.batch)
        return max(lost, 0)

    # -- one step of each application ------------------------------------------------
    def rx_step(self) -> int:
        _n, self.free, self.work = self.net.submit_and_poll(self.free, self.work, False)
        k = len(self.work)
        if k:
            self.ops.transfer(self.work, self.free)
            self.received += k
        return k

    def fill_tx(self, frame: bytes | None = None) -> None:
        """Write a 60-byte frame into every free buffer (once, before a TX run)."""
        offs = self.ops.peek(self.free)
        f = np.frombuffer(frame or _default_frame(), dtype=np.uint8)
        self.ops.mem[offs[:, None] + np.arange(f.size)] = f
        self.ops.set_lengths(offs, f.size)

    def tx_step(self) -> int:
        ops = self.ops
        ops.transfer(self.free, self.work, self.batch - len(self.work))
        n, self.work, self.free = self.net.submit_and_poll(self.work, self.free, True)
        self.sent += n
        return n

    def fwd_step(self) -> int:
        """Receive a batch, rewrite it (ixy-fwd), send it back; returns how many went out."""
        ops = self.ops
        _n, self.free, self.work = self.net.submit_and_poll(self.free, self.work, False)
        offs = ops.peek(self.work)
        if not offs.size:
            return 0
        self.received += offs.size
        forward(ops.mem, offs)
        n, self.work, self.free = self.net.submit_and_poll(self.work, self.free, True)
        self.sent += n
        left = offs.size - n
        if left:  # the TX ring was full: drop them, as ixy-fwd does
            self.dropped += left
            ops.transfer(self.work, self.free)
        return n   # forwarded = sent back out

    def run(self, mode: str, seconds: float, limit: int = 0, on_error=None,
            timeline: np.ndarray | None = None, bin_ns: int = 1_000_000,
            beat=None) -> tuple[int, int, int]:
        """Run `mode` for `seconds` (or until `limit` packets).  Returns
        (packets, cpu_ns, wall_ns).  `on_error(exc)` handles a failed call (re-raise
        to stop); without it errors propagate.  `timeline[i]` accumulates the
        packets handled in the i-th `bin_ns` interval from the start.  `beat()` is
        called every ~50 ms: a domain busy in one long call must still show the
        supervisor's watchdog a moving heartbeat."""
        step = {"rx": self.rx_step, "tx": self.tx_step, "fwd": self.fwd_step}.get(mode)
        if step is None:
            raise NetError(f"unknown mode {mode!r}: use rx, tx or fwd")
        if mode == "tx":
            self.fill_tx()
        total = 0
        idle = 0
        now = time.monotonic_ns
        cpu0, t0 = time.process_time_ns(), now()
        self.started_ns = t0
        end = t0 + int(seconds * 1e9)
        nbins = 0 if timeline is None else timeline.size
        next_beat = t0
        while True:
            try:
                k = step()
            except Exception as e:
                if on_error is None:
                    raise
                on_error(e)
                k = 0
            t = now()
            if beat is not None and t > next_beat:
                beat()
                next_beat = t + 50_000_000
            if k:
                total += k
                idle = 0
                if nbins:
                    b = (t - t0) // bin_ns
                    if b < nbins:
                        timeline[b] += k
                if limit and total >= limit:
                    break
            else:
                idle += 1
                if idle > 256:
                    time.sleep(0.00005)
            if t > end:
                break
        return total, time.process_time_ns() - cpu0, now() - t0


class AppHost:
    """NetApp for a domain: runs a PacketLoop over `self._app_net()`.

    Subclasses set `self.ops` and `self.app_packets`, and may override `_app_net`,
    `_app_on_error` (None: errors propagate) and `_app_done(loop)`."""

    app_packets = 2048
    loop = None
    _timeline = None
    _timeline_start = 0
    _timeline_bin = 1_000_000
    _app_errors = 0

    def _app_net(self):
        return self

    def _app_on_error(self, loop: PacketLoop):
        return None

    def _app_done(self, loop: PacketLoop) -> None:
        loop.close()

    def run_app(self, mode: str, batch: int, seconds: float, limit: int):
        if not 0 < seconds <= 3600:
            raise NetError(f"seconds must be in (0, 3600], got {seconds}")
        loop = self.loop = PacketLoop(self.ops, self._app_net(), self.app_packets, batch)
        self._app_errors = 0
        bin_ns = max(1_000_000, int(seconds * 1e9 / 15000))
        tl = np.zeros(int(seconds * 1e9 // bin_ns) + 1, dtype=np.int32)
        try:
            n, cpu, wall = loop.run(mode, seconds, limit, self._app_on_error(loop), tl, bin_ns,
                                    beat=self.ctx.rt.beat)
        finally:
            self._app_done(loop)
        self._timeline, self._timeline_start, self._timeline_bin = tl, loop.started_ns, bin_ns
        return n, cpu, wall, self._app_errors

    def timeline(self) -> bytes:
        if self._timeline is None:
            return b""
        head = np.array([self._timeline_start, self._timeline_bin], dtype=np.int64).tobytes()
        return head + self._timeline.tobytes()


def decode_timeline(raw: bytes) -> tuple[int, int, np.ndarray]:
    """(start monotonic ns, bin ns, packets per bin) from NetApp.timeline()."""
    if len(raw) < 16:
        return 0, 1, np.zeros(0, dtype=np.int32)
    start, bin_ns = np.frombuffer(raw[:16], dtype=np.int64)
    return int(start), int(bin_ns), np.frombuffer(raw[16:], dtype=np.int32)


def _default_frame() -> bytes:
    f = bytearray(FRAME)
    f[0:6] = b"\x02\x00\x00\x00\x00\x02"
    f[6:12] = b"\x02\x00\x00\x00\x00\x01"
    f[12:14] = b"\x88\xb5"
    return bytes(f)
