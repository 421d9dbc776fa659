"""The ixgbe driver domain with a real supervisor: device processes, wires, the Net
interface across domains, l2fwd, nullnet, crashes with and without the shadow."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid

import numpy as np
import pytest

from redleaf.domains.errors import DomainCrashed
from redleaf.drivers.ixgbe.frames import parse_test_frame
from redleaf.drivers.ixgbe.netns import NetNamespace, WireUnavailable
from redleaf.drivers.ixgbe.wire import ShmCable, TapWire
from redleaf.drivers.net import Net, NetApp, NetError

from tests.conftest import wait_busy

from .netclient import DST, SRC, NetClient

SLOW = pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="set RUN_SLOW=1 for the long soak")

HEAP = """
[heap]
size = "64MiB"
records = 65536

[supervisor]
watchdog_s = 5.0
"""


def device(name: str, config: str) -> str:
    return f"""
[[device]]
name = "{name}"
target = "redleaf.drivers.ixgbe.device:IxgbeDevice"
config = {config}
"""


def driver(name: str, dev: str, extra: str = "", target: str = "redleaf.drivers.ixgbe.domain:IxgbeNetDriver") -> str:
    return f"""
[[domain]]
name = "{name}"
target = "{target}"
restart = "permanent"
max_restarts = 100
period_s = 10.0
backoff_s = 0.01
backoff_max_s = 0.05
config = {{ device = "{dev}" }}
{extra}
"""


def shadowed(name: str, dev: str) -> str:
    """What `shadow = true` expands to, written out (supervisor/manifest.py)."""
    return driver(f"{name}.driver", dev) + f"""
[[domain]]
name = "{name}"
target = "redleaf.drivers.ixgbe.shadow:IxgbeShadow"
restart = "permanent"
config = {{ device = "{dev}", driver = "{name}.driver" }}
uses = {{ driver = "{name}.driver" }}
"""


LOOPBACK = HEAP + device("ixgbe0-dev", '{ wire = "loopback" }') + driver("ixgbe0", "ixgbe0-dev")
INDRIVER = "redleaf.drivers.ixgbe.pktapp:InDriverPktApp"


def test_the_production_driver_exports_net_only_and_the_in_driver_app_is_a_subclass():
    from redleaf.drivers.ixgbe.domain import IxgbeNetDriver
    from redleaf.drivers.ixgbe.pktapp import InDriverPktApp

    assert issubclass(IxgbeNetDriver, Net) and not issubclass(IxgbeNetDriver, NetApp)
    assert not hasattr(IxgbeNetDriver, "run_app") and not hasattr(IxgbeNetDriver, "timeline")
    assert issubclass(InDriverPktApp, IxgbeNetDriver) and issubclass(InDriverPktApp, NetApp)


@pytest.fixture
def cable():
    path = f"/dev/shm/redleaf-test-{os.getpid()}-cable-{uuid.uuid4().hex[:8]}"
    ShmCable.create(path, slots=4096, slot_size=2048)
    try:
        yield path
    finally:
        os.unlink(path)


def packets_owned(inst) -> dict[str, int]:
    """Live Packets in the heap by owner (domain name), read from the ownership table."""
    from redleaf.drivers.net import Packet
    from redleaf.shared_heap import HeapManager
    from redleaf.shared_heap.layout import R_LIVE

    names = {st["id"]: n for n, st in inst.status().items()}
    hm = HeapManager.open(str(inst.paths.heap), readonly=True)
    try:
        rec = hm.hf.records
        owners = rec["owner"][(rec["state"] == R_LIVE) & (rec["type_id"] == Packet.type_id)]
        rec = None
        ids, counts = np.unique(owners, return_counts=True)
        return {names.get(int(i), str(int(i))): int(k) for i, k in zip(ids, counts)}
    finally:
        hm.close()


def check_clean(cl: NetClient) -> None:
    assert cl.corrupt == 0, f"{cl.corrupt} corrupted frames"
    assert cl.duplicates == 0, f"{cl.duplicates} duplicated frames"
    assert cl.foreign == 0, "frames that were never sent"


def test_loopback_end_to_end_every_frame_accounted(make_instance):
    inst = make_instance(LOOPBACK)
    with inst.attach() as c:
        cl = NetClient(c, "ixgbe0")
        cl.run(3000)
        check_clean(cl)
        s = cl.net.stats()
        sent = cl.next_seq - len(cl.txd)
        assert int(s["tx_packets"]) == sent
        # every frame that went out came back, or the device counted it as dropped
        assert len(cl.received) + int(s["rx_missed"]) == sent
        assert len(cl.received) >= sent * 0.9
        assert int(s["device_errors"]) == 0
        # a forged deque is the client's error (declared NetError), not a driver panic
        forged = cl.ops.deque(4, cl.ops.alloc_packets(2))
        pairs = np.ndarray((4, 2), dtype=np.uint32, buffer=c.heap.mem, offset=forged.offset + 16)
        pairs[0, 1] += 1
        with pytest.raises(NetError, match="not live Packets"):
            cl.net.submit_and_poll(forged, cl.ops.deque(4), True)
        # a length the device would refuse is bounced back as completed, not sent
        bad = cl.ops.alloc_packets(1)
        cl.ops.set_lengths(bad, 5000)
        n, _txd, back = cl.net.submit_and_poll(cl.ops.deque(4, bad), cl.ops.deque(4), True)
        assert n == 0 and cl.ops.peek(back).tolist() == bad.tolist()
        assert int(cl.net.stats()["tx_packets"]) == sent
        assert inst.status()["ixgbe0"]["restarts"] == 0


def test_pair_of_nics_with_l2fwd_across_a_domain_boundary(make_instance, cable):
    m = (HEAP + device("a-dev", f'{{ wire = "shm", cable = "{cable}", end = 0 }}')
         + device("b-dev", f'{{ wire = "shm", cable = "{cable}", end = 1 }}')
         + driver("neta", "a-dev") + driver("netb", "b-dev") + """
[[domain]]
name = "l2fwd"
target = "redleaf.drivers.ixgbe.l2fwd_domain:L2Fwd"
uses = { net = "netb" }
config = { autostart = true, batch = 32, packets = 1024 }
""")
    inst = make_instance(m)
    with inst.attach() as c:
        cl = NetClient(c, "neta")
        cl.run(2000, window=128)
        check_clean(cl)
        fwd = c.lookup("l2fwd", NetApp)
        received, sent, dropped, errors = fwd.counters()
        sa, sb = cl.net.stats(), c.lookup("netb", Net).stats()
        out = cl.next_seq - len(cl.txd)
        missed = int(sa["rx_missed"]) + int(sb["rx_missed"])
        assert len(cl.received) + missed + dropped == out
        assert len(cl.received) >= out * 0.9
        assert errors == 0
        # forwarded: MACs swapped, and byte 1 touched on the way (ixy-fwd)
        want_dst = SRC
        want_src = bytearray(DST)
        want_src[1] = (want_src[1] + 1) & 0xFF
        assert cl.headers and all(h[:6] == want_dst and h[6:12] == bytes(want_src) for h in cl.headers)


class UdpEcho:
    """The far end of a `udp` wire, in the test process: every datagram (one frame) goes
    straight back to the port it came from, as a cable looped at a switch would."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.seen: list[int | None] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                frame, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.seen.append(parse_test_frame(frame))
            self.sock.sendto(frame, addr)

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_udp_wire_end_to_end_through_the_driver_domain(make_instance):
    echo = UdpEcho()
    try:
        m = HEAP + device("ixgbe0-dev", f'{{ wire = "udp", peer_port = {echo.port} }}') + driver("ixgbe0", "ixgbe0-dev")
        inst = make_instance(m)
        with inst.attach() as c:
            cl = NetClient(c, "ixgbe0")
            cl.run(2000, window=128)
            check_clean(cl)
            sent = cl.next_seq - len(cl.txd)
            s = cl.net.stats()
            assert int(s["tx_packets"]) == sent
            # every frame crossed 127.0.0.1 intact, and came back through the NIC and driver
            assert None not in echo.seen and len(set(echo.seen)) == len(echo.seen)
            assert set(cl.received) <= set(echo.seen)
            assert len(cl.received) + int(s["rx_missed"]) <= len(echo.seen) <= sent
            assert len(cl.received) >= sent * 0.9
            assert int(s["device_errors"]) == 0
    finally:
        echo.close()


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _arp_request(mac: bytes, spa: bytes, tpa: bytes) -> bytes:
    return (b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + mac + spa + b"\x00" * 6 + tpa + bytes(18))


def _ping(dst_mac: bytes, mac: bytes, src: bytes, dst: bytes, ident: int, payload: bytes) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + payload
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0, 64, 1, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dst_mac + mac + b"\x08\x00" + ip + icmp


def _exchange(cl: NetClient, frame: bytes, want, timeout: float = 5.0) -> bytes | None:
    """Send one raw frame through the driver (again every half second, as a host stack
    would); return the first received frame for which want(frame) holds."""
    ops = cl.ops
    end = time.monotonic() + timeout
    resend = 0.0
    while time.monotonic() < end:
        # receive buffers first: a reply that finds the RX ring empty is dropped
        _n, cl.free, cl.rxd = cl.net.submit_and_poll(cl.free, cl.rxd, False)
        offs = ops.peek(cl.rxd)
        got = [ops.mem[o:o + n].tobytes() for o, n in zip(offs.tolist(), ops.lengths(offs).tolist())]
        ops.transfer(cl.rxd, cl.free)
        for f in got:
            if want(f):
                return f
        if time.monotonic() >= resend:
            resend = time.monotonic() + 0.5
            off = ops.take(cl.free, 1)
            ops.mem[int(off[0]):int(off[0]) + len(frame)] = np.frombuffer(frame, np.uint8)
            ops.set_lengths(off, len(frame))
            ops.put(cl.txd, off)
        _n, cl.txd, cl.done = cl.net.submit_and_poll(cl.txd, cl.done, True)
        ops.transfer(cl.done, cl.free)
        time.sleep(0.002)
    return None


@pytest.mark.skipif(not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
                    reason="the tap wire needs root, /dev/net/tun and iproute2")
def test_tap_wire_ping_through_the_driver_domain(make_instance):
    """A Linux stack in a namespace the device makes answers ARP and ping sent through the
    Net interface; the namespace goes away with the instance."""
    ns, ifname = f"rltest{os.getpid()}", f"rlt{os.getpid() % 100000}"
    probe = None
    try:   # root alone is not enough in some containers: probe, and skip with the reason
        probe = NetNamespace(ns)
        TapWire(probe, ifname, addr=None).close()
    except WireUnavailable as e:
        pytest.skip(str(e))
    finally:
        if probe is not None:
            probe.close()
    m = HEAP + device("ixgbe0-dev", f'{{ wire = "tap", netns = "{ns}", ifname = "{ifname}", '
                                    f'addr = "10.77.0.1/24" }}') + driver("ixgbe0", "ixgbe0-dev")
    mac, me, peer = b"\x02\x11\x22\x33\x44\x55", bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
    try:
        inst = make_instance(m)
        with inst.attach() as c:
            cl = NetClient(c, "ixgbe0")
            arp = _exchange(cl, _arp_request(mac, me, peer),
                            lambda f: f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02")
            assert arp is not None, "no ARP reply from the namespace"
            assert arp[:6] == mac and arp[28:32] == peer
            peer_mac = arp[22:28]
            payload = bytes(range(56))
            reply = _exchange(cl, _ping(peer_mac, mac, me, peer, 0x4242, payload),
                              lambda f: f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 0)
            assert reply is not None, "no echo reply from the namespace"
            assert reply[26:30] == peer and reply[30:34] == me
            assert struct.unpack("!H", reply[38:40])[0] == 0x4242 and reply[42:42 + 56] == payload
            assert int(cl.net.stats()["device_errors"]) == 0
        inst.stop()
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in out, "the device left its network namespace behind"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _net_client_a(instance: str, conn) -> None:
    """A second client process (a process is one domain): runs the parent's commands."""
    from redleaf.domains import attach
    with attach(instance) as a:
        ca = NetClient(a, "ixgbe0", packets=1024)
        conn.send(ca.ops.peek(ca.free).tolist())        # every buffer A will ever have
        while True:
            cmd, arg = conn.recv()
            if cmd == "run":
                ca.run(ca.next_seq + arg)
                conn.send((len(ca.received), ca.corrupt, ca.duplicates, ca.foreign))
            elif cmd == "vanish":
                ca.send_some(32)                         # TX in flight, RX buffers in the ring
                os._exit(0)                              # no goodbye


@pytest.mark.parametrize("shadow", [False, True])
def test_net_has_one_client_at_a_time_and_frees_what_a_departed_one_left(make_instance, second_client, shadow):
    """The rings are not labelled by client: a second client is refused while the first
    has buffers in the driver, and once the first has gone the NIC is reset and its
    buffers freed: none of them (nor their data) ever reaches the next client."""
    from redleaf.shared_heap.layout import R_LIVE
    manifest = HEAP + device("ixgbe0-dev", '{ wire = "loopback" }') + (
        shadowed("ixgbe0", "ixgbe0-dev") if shadow else driver("ixgbe0", "ixgbe0-dev"))
    inst = make_instance(manifest)
    here, a = second_client(_net_client_a, inst)
    with inst.attach() as c:
        assert here.poll(30), "client A did not start"
        a_bufs = np.array(here.recv(), dtype=np.int64)
        rec = c.heap.hf.records

        def a_buffers_alive() -> int:
            return int(np.count_nonzero((rec["state"] == R_LIVE) & np.isin(rec["offset"], a_bufs)))

        here.send(("run", 200))
        assert here.poll(30) and here.recv() == (200, 0, 0, 0)
        b = NetClient(c, "ixgbe0", packets=1024)
        with pytest.raises(NetError, match="one Net client at a time"):
            b.receive()
        b.free = b.ops.deque(2048, b.ops.alloc_packets(1024))   # the refused call took its deques
        b.rxd = b.ops.deque(256)
        here.send(("run", 100))                      # A is not disturbed
        assert here.poll(30) and here.recv() == (300, 0, 0, 0)
        here.send(("vanish", None))
        a.join(10)
        assert a_buffers_alive() > 0                 # in the driver's rings, A gone
        deadline = time.monotonic() + 10
        while True:   # refused until the supervisor has seen A go (it says: retry)
            try:
                b.receive()
                break
            except NetError as e:
                assert "one Net client" in str(e) and time.monotonic() < deadline
                b.free = b.ops.deque(2048, b.ops.alloc_packets(1024))
                b.rxd, b.done = b.ops.deque(256), b.ops.deque(2048)
                time.sleep(0.01)
        assert a_buffers_alive() == 0                # reset, then freed: none handed on
        b.run(500)
        assert len(b.received) == 500 and b.corrupt == b.duplicates == b.foreign == 0
        assert a_buffers_alive() == 0


def test_nullnet_returns_packets_at_once_and_apps_run_in_driver_and_across(make_instance):
    m = (HEAP + device("ixgbe0-dev", '{ wire = "pktgen" }') + driver("ixgbe0", "ixgbe0-dev", target=INDRIVER) + """
[[domain]]
name = "nullnet"
target = "redleaf.drivers.ixgbe.nullnet:NullNetDomain"

[[domain]]
name = "fwd-null"
target = "redleaf.drivers.ixgbe.l2fwd_domain:L2Fwd"
uses = { net = "nullnet" }
""")
    inst = make_instance(m)
    with inst.attach() as c:
        null = c.lookup("nullnet", Net)
        ops = NetClient(c, "nullnet", packets=64).ops
        sub = ops.deque(64, ops.alloc_packets(40))
        col = ops.deque(32)
        n, sub, col = null.submit_and_poll(sub, col, True)
        assert (n, len(sub), len(col)) == (32, 8, 32)
        k, col = null.poll(col, False)
        assert k == 0 and len(col) == 32
        # the same forwarding application across a boundary (nullnet) and inside the
        # driver domain (pktgen traffic): both move packets
        n, _cpu, wall, errors = c.lookup("fwd-null", NetApp).run_app("fwd", 32, 0.3, 0)
        assert n > 0 and errors == 0 and wall > 0
        for mode in ("rx", "tx", "fwd"):
            n, _cpu, _wall, errors = c.lookup("ixgbe0", NetApp).run_app(mode, 32, 0.3, 0)
            assert n > 0 and errors == 0, mode
        assert int(c.lookup("ixgbe0", Net).stats()["device_errors"]) == 0


def test_kill_9_of_driver_without_shadow(make_instance):
    inst = make_instance(HEAP + device("ixgbe0-dev", '{ wire = "loopback" }')
                         + driver("ixgbe0", "ixgbe0-dev", target=INDRIVER))   # run_app: a call in flight
    with inst.attach() as c:
        cl = NetClient(c, "ixgbe0")
        cl.run(500)
        check_clean(cl)
        old = inst.status()["ixgbe0"]
        first = int(cl.net.stats()["incarnation"])
        app = c.lookup("ixgbe0", NetApp)
        # stats() defers nothing, so the driver is idle now; busy from here on means it
        # is serving our run_app, and the kill lands inside it
        area = c.heap.runtime_area(old["id"])
        killer = threading.Thread(target=lambda: (wait_busy(area, "the driver"),
                                                  inst.request("kill", name="ixgbe0", how="sigkill")))
        killer.start()
        try:
            with pytest.raises(DomainCrashed):
                app.run_app("rx", 32, 30.0, 0)  # in flight when the driver dies
        finally:
            killer.join()
        new = inst.wait_state("ixgbe0", "running", pid_not=old["pid"])
        assert new["restarts"] == old["restarts"] + 1
        # the buffers the dead driver held are gone with it: start a fresh client pool
        cl2 = NetClient(c, "ixgbe0")
        s0 = cl2.net.stats()
        assert int(s0["incarnation"]) != first
        assert int(s0["tx_packets"]) == 0       # the NIC was reset by the new driver
        cl2.run(500)
        check_clean(cl2)
        assert len(cl2.received) >= 450
        assert inst.request("heap", check=True)["violations"] == []


def _shadow_run(inst, kills: int, gap: float, frames_after: int = 300) -> NetClient:
    """Traffic through the shadow while the driver is killed `kills` times."""
    with inst.attach() as c:
        cl = NetClient(c, "ixgbe0", packets=1024)
        cl.run(300)
        done = threading.Event()
        killed = []

        def killer():
            try:
                for _ in range(kills):
                    time.sleep(gap)
                    pid = inst.status()["ixgbe0.driver"]["pid"]
                    inst.request("kill", name="ixgbe0.driver", how="sigkill")
                    killed.append(pid)
                    inst.wait_state("ixgbe0.driver", "running", pid_not=pid, timeout=20.0)
            finally:
                done.set()

        t = threading.Thread(target=killer)
        t.start()
        try:
            while not done.is_set():   # every call must succeed: no exception reaches here
                cl.send_some()
                cl.receive()
        finally:
            t.join()
        assert len(killed) == kills
        before = len(cl.received)
        # traffic resumes after the last restart (first give the new RX ring buffers:
        # frames that find it empty are dropped, and counted)
        cl.receive()
        start = cl.next_seq
        cl.run(start + frames_after)
        after = sum(1 for s in cl.received if s >= start)
        missed = int(cl.net.stats()["rx_missed"])      # of the current incarnation
        assert after + missed >= cl.next_seq - start - len(cl.txd)
        assert after >= frames_after * 0.9, f"only {after} of {frames_after} frames after the last restart"
        assert len(cl.received) > before
        check_clean(cl)
        assert int(cl.net.stats()["incarnation"]) >= 1     # the shadow saw the crashes
        # the client's pool did not shrink: what it holds (exactly what the heap says it
        # owns) and what the driver holds for it are the 1024 buffers it started with
        mine = len(cl.free) + len(cl.rxd) + len(cl.txd) + len(cl.done)
        owned = packets_owned(inst)
        assert owned[f"client-{os.getpid()}"] == mine and mine + owned["ixgbe0.driver"] == 1024, owned
        # after every reclaim the heap's invariants hold (no overlap, nothing owned
        # by a dead driver, every byte accounted for)
        assert inst.request("heap", check=True)["violations"] == []
        # a corrupt deque header is the client's error, declared, not a shadow panic
        dq = cl.ops.deque(4)
        struct.pack_into("<I", c.heap.mem, dq.offset + 4, 99)       # length > capacity
        with pytest.raises(NetError, match="corrupt"):
            cl.net.submit_and_poll(dq, cl.ops.deque(4), True)
        assert int(cl.net.stats()["incarnation"]) >= 1
        return cl


def test_shadow_hides_kill_9_under_traffic(make_instance):
    # `shadow = true`: the supervisor runs the driver as ixgbe0.driver and the class
    # named by IxgbeNetDriver.SHADOW under ixgbe0
    inst = make_instance(HEAP + device("ixgbe0-dev", '{ wire = "loopback" }')
                         + driver("ixgbe0", "ixgbe0-dev", "shadow = true"))
    assert inst.status()["ixgbe0"]["target"] == "redleaf.drivers.ixgbe.shadow:IxgbeShadow"
    _shadow_run(inst, kills=3, gap=0.4)
    assert inst.status()["ixgbe0"]["restarts"] == 0


@pytest.mark.slow
@SLOW
def test_shadow_soak_many_kills(make_instance):
    inst = make_instance(HEAP + device("ixgbe0-dev", '{ wire = "loopback" }') + shadowed("ixgbe0", "ixgbe0-dev"))
    _shadow_run(inst, kills=30, gap=0.3, frames_after=3000)
    assert inst.status()["ixgbe0"]["restarts"] == 0
