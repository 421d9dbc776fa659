"""The ixgbe driver domain with a real supervisor: device processes, wires, the Net
interface across domains, l2fwd, nullnet, crashes with and without the shadow."""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

import numpy as np
import pytest

from domains.errors import DomainCrashed
from drivers.ixgbe.wire import ShmCable
from drivers.net import Net, NetApp, NetError

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
target = "drivers.ixgbe.device:IxgbeDevice"
config = {config}
"""


def driver(name: str, dev: str, extra: str = "") -> str:
    return f"""
[[domain]]
name = "{name}"
target = "drivers.ixgbe.domain:IxgbeNetDriver"
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
target = "drivers.ixgbe.shadow:IxgbeShadow"
restart = "permanent"
config = {{ device = "{dev}", driver = "{name}.driver" }}
uses = {{ driver = "{name}.driver" }}
"""


LOOPBACK = HEAP + device("ixgbe0-dev", '{ wire = "loopback" }') + driver("ixgbe0", "ixgbe0-dev")


@pytest.fixture
def cable():
    path = f"/dev/shm/redleaf-test-{os.getpid()}-cable-{uuid.uuid4().hex[:8]}"
    ShmCable.create(path, slots=4096, slot_size=2048)
    try:
        yield path
    finally:
        os.unlink(path)


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
target = "drivers.ixgbe.l2fwd_domain:L2Fwd"
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


def test_nullnet_returns_packets_at_once_and_apps_run_in_driver_and_across(make_instance):
    m = (HEAP + device("ixgbe0-dev", '{ wire = "pktgen" }') + driver("ixgbe0", "ixgbe0-dev") + """
[[domain]]
name = "nullnet"
target = "drivers.ixgbe.nullnet:NullNetDomain"

[[domain]]
name = "fwd-null"
target = "drivers.ixgbe.l2fwd_domain:L2Fwd"
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
    inst = make_instance(LOOPBACK)
    with inst.attach() as c:
        cl = NetClient(c, "ixgbe0")
        cl.run(500)
        check_clean(cl)
        old = inst.status()["ixgbe0"]
        first = int(cl.net.stats()["incarnation"])
        app = c.lookup("ixgbe0", NetApp)
        killer = threading.Timer(0.3, lambda: inst.request("kill", name="ixgbe0", how="sigkill"))
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
        assert len(cl.free) + len(cl.rxd) + len(cl.txd) + len(cl.done) > 0
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
    assert inst.status()["ixgbe0"]["target"] == "drivers.ixgbe.shadow:IxgbeShadow"
    _shadow_run(inst, kills=3, gap=0.4)
    assert inst.status()["ixgbe0"]["restarts"] == 0


@pytest.mark.slow
@SLOW
def test_shadow_soak_many_kills(make_instance):
    inst = make_instance(HEAP + device("ixgbe0-dev", '{ wire = "loopback" }') + shadowed("ixgbe0", "ixgbe0-dev"))
    _shadow_run(inst, kills=30, gap=0.3, frames_after=3000)
    assert inst.status()["ixgbe0"]["restarts"] == 0
