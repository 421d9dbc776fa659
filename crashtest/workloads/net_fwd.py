"""`net-fwd`: numbered frames forwarded by the ixgbe driver (behind its shadow) and an
l2fwd domain, sent and received on the device model's wire.

The instance: the emulated 82599 `ixgbe0-dev` on a `udp` wire (its port on
127.0.0.1 fixed in the manifest, so a restarted device is found at the same place),
the driver `ixgbe0.driver` behind its shadow `ixgbe0`, and the forwarder `l2fwd`
(drivers/ixgbe/l2fwd_domain.py, autostart) on `ixgbe0`: every frame that reaches the
NIC goes back out of it, MACs swapped.  The client is a UDP socket in the campaign's
process, the wire's far end: each round it sends a window of test frames
(drivers/ixgbe/frames.py: a sequence number and a CRC32) and reads what comes back.

What the model allows (the path is FIFO: a socket, the device's rings, one
forwarder): no frame corrupted, none twice, none after a frame sent later (a
reordering); frames lost only when the fault hit the path.  A frame is known lost
once a frame sent after it came back (FIFO), so a round that misses frames sends
a probe (the next number) until one returns: a round ends with every frame of it
either back or lost, and its losses are recorded (a `FrameLost` error, judged by
the campaign against the wave's targets) before the campaign's next check.  The
ixgbe shadow hides a driver crash from its client but does not promise the frames
in flight (a NIC reset drops them, drivers/ixgbe/shadow.py), so a wave that hit
the driver, its device, the shadow or the forwarder may lose frames, and a wave
that hit none of them (an attached client, say) may not.

May call: drivers (ixgbe frames), crashtest.workloads.base.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from .base import Recorder, Workload

DEV, DRIVER, SHADOW, FWD = "ixgbe0-dev", "ixgbe0.driver", "ixgbe0", "l2fwd"
PATH = (DEV, DRIVER, SHADOW, FWD)
WINDOW = 32  # frames a round
LENGTHS = (60, 128, 512, 1514)
#: nothing back for this long: probe the path with the next frame
QUIET_S = 0.3
#: a round still missing frames after this long records them lost (the path stays
#: broken: a failed entry, which the campaign reports on its own)
ROUND_S = 20.0
#: a round longer than this is a hung caller (it gives up after ROUND_S)
ROUND_DEADLINE_S = ROUND_S + QUIET_S + 1.0

_RESTART = """restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.0
backoff_max_s = 0.05
"""


def _free_udp_port() -> int:
    """A port of 127.0.0.1 free now, for the device's end of the wire (a fixed one: a
    restarted device must bind where the client sends)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class FrameLedger:
    """What came back, against what was sent: the pure part of the client.

    `sent(seq)` and `got(frame)` in the order things happen; `settle()` declares lost
    every outstanding frame sent before the newest one received (FIFO: it cannot come
    any more).  Problems (corrupt, duplicate, reordered, foreign frames) are sentences."""

    def __init__(self):
        self.next_seq = 0
        self.outstanding: set[int] = set()
        self.received: set[int] = set()
        self.top = -1  # the highest sequence number received
        self.lost = 0
        self.problems: list[str] = []

    def send(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.outstanding.add(seq)
        return seq

    def got(self, frame: bytes) -> bool:
        """One frame from the wire; True if it was a good, new one."""
        from redleaf.drivers.ixgbe.frames import parse_test_frame

        seq = parse_test_frame(frame)
        if seq is None:
            self.problems.append(f"a corrupted frame came back ({len(frame)} bytes, first {frame[:16].hex()})")
            return False
        if seq in self.received:
            self.problems.append(f"frame {seq} came back twice")
            return False
        if seq >= self.next_seq:
            self.problems.append(f"frame {seq} came back but was never sent")
            return False
        if seq < self.top:
            self.problems.append(f"frame {seq} came back after frame {self.top}, sent later: reordered")
        if seq not in self.outstanding:  # declared lost already, yet here: the same as a reordering
            self.lost -= 1
        self.outstanding.discard(seq)
        self.received.add(seq)
        self.top = max(self.top, seq)
        return True

    def settle(self) -> int:
        """Declare lost what a later frame overtook; how many that were."""
        gone = [s for s in self.outstanding if s < self.top]
        for s in gone:
            self.outstanding.discard(s)
        self.lost += len(gone)
        return len(gone)

    def give_up(self) -> int:
        """The path did not deliver anything in time: everything outstanding is lost."""
        n = len(self.outstanding)
        self.outstanding.clear()
        self.lost += n
        return n


class NetFwdWorkload(Workload):
    name = "net-fwd"
    targets = ",".join(PATH)
    methods: dict = {}  # the client makes no call into a domain: in-call kinds use their signals
    deadline_s = ROUND_DEADLINE_S
    joinable = False
    joinable_why = "needs its own device on a udp wire whose far end is the campaign's socket"

    def __init__(self, tmpdir: str):
        super().__init__(tmpdir)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        # unconnected: a datagram sent while the device restarts is lost on the wire,
        # and the kernel's port-unreachable does not turn into an error on this socket
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.dev_port = _free_udp_port()
        self.ledger = FrameLedger()
        self.lost_by_round: list[int] = []

    def manifest(self) -> str:
        return f"""
[heap]
size = "64MiB"
records = 65536

[supervisor]
watchdog_s = 2.0

[[device]]
name = "{DEV}"
target = "redleaf.drivers.ixgbe.device:IxgbeDevice"
config = {{ wire = "udp", local_port = {self.dev_port}, peer_port = {self.port} }}
{_RESTART}
[[domain]]
name = "{DRIVER}"
target = "redleaf.drivers.ixgbe.domain:IxgbeNetDriver"
config = {{ device = "{DEV}" }}
{_RESTART}
[[domain]]
name = "{SHADOW}"
target = "redleaf.drivers.ixgbe.shadow:IxgbeShadow"
config = {{ device = "{DEV}", driver = "{DRIVER}" }}
uses = {{ driver = "{DRIVER}" }}
{_RESTART}
[[domain]]
name = "{FWD}"
target = "redleaf.drivers.ixgbe.l2fwd_domain:L2Fwd"
uses = {{ net = "{SHADOW}" }}
config = {{ autostart = true, batch = 32, packets = 1024 }}
{_RESTART}"""

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        return kind == "FrameLost" and bool(targets & set(PATH))

    def final_problems(self) -> list[str]:
        if not self.ledger.received:
            return ["no frame ever came back through the forwarding path"]
        return []  # the ledger's problems went to the record as they were found

    def stats(self) -> dict:
        led = self.ledger
        return {"frames_sent": led.next_seq, "frames_back": len(led.received), "frames_lost": led.lost,
                "rounds_with_loss": len(self.lost_by_round)}

    def close(self) -> None:
        self.sock.close()

    # -- the client loop -------------------------------------------------------------------
    def _send(self, seq: int) -> None:
        from redleaf.drivers.ixgbe.frames import make_test_frame

        try:
            self.sock.sendto(make_test_frame(seq, LENGTHS[seq % len(LENGTHS)]), ("127.0.0.1", self.dev_port))
        except OSError:
            pass  # the socket's buffer is full or the port is down: the frame is lost, like on a wire

    def _receive(self, rec: Recorder, timeout: float) -> int:
        """Read what is there (waiting up to `timeout` for the first); how many good frames."""
        n = 0
        r, _, _ = select.select([self.sock], [], [], timeout)
        while r:
            try:
                frame = self.sock.recv(4096)
            except BlockingIOError:
                break
            if self.ledger.got(frame):
                n += 1
                rec.ok()
            r, _, _ = select.select([self.sock], [], [], 0)
        return n

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        led = self.ledger
        problems_seen = 0
        while not stop.is_set():
            self.gate()
            lost = 0
            # a round is timed like a call (the hung-caller check), but what it completes
            # is counted per frame back (rec.ok in _receive), not per round
            t0 = time.monotonic()
            rec.in_call = ("net-fwd round", t0, ROUND_DEADLINE_S)
            for _ in range(WINDOW):
                self._send(led.send())
            t_end = t0 + ROUND_S
            while led.outstanding and not stop.is_set() and not self.leaving.is_set():
                if not self._receive(rec, QUIET_S):
                    if time.monotonic() > t_end:
                        lost += led.give_up()
                        break
                    self._send(led.send())  # a probe: once it is back, what it overtook is lost
                lost += led.settle()
            rec.in_call = None
            took = time.monotonic() - t0
            if took > ROUND_DEADLINE_S:
                rec.slow_calls.append(("net-fwd round", took, ROUND_DEADLINE_S))
            for p in led.problems[problems_seen:]:
                rec.problem(p)
            problems_seen = len(led.problems)
            if lost:
                self.lost_by_round.append(lost)
                rec.error("FrameLost", f"{lost} frame(s) lost on the forwarding path (total {led.lost})")
