"""Wire backends: UDP on 127.0.0.1, cables across processes, TAP in a netns."""
import os
import shutil
import subprocess
import time

import pytest

from redleaf.drivers.ixgbe.sim import Port
from redleaf.drivers.ixgbe.frames import make_test_frame, parse_test_frame
from redleaf.drivers.ixgbe.netns import NetNamespace, WireUnavailable
from redleaf.drivers.ixgbe.wire import ShmCable, ShmWire, SocketWire, TapWire, UdpWire, socket_cable, udp_pair


def _poll_until(cond, timeout=5.0, step=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if step:
            step()
        if cond():
            return True
        time.sleep(0.001)
    return False


def test_udp_only_localhost():
    with pytest.raises(ValueError):
        UdpWire(host="0.0.0.0")
    w = UdpWire()
    assert w.sock.getsockname()[0] == "127.0.0.1"
    w.close()


def test_udp_wire_between_two_nics():
    wa, wb = udp_pair()
    a, b = Port(wa), Port(wb)
    a.init()
    b.init()
    pkts = []
    for i in range(100):
        off = a.free.pop()
        f = make_test_frame(i, 60 + i * 10)
        a.dma[off:off + len(f)] = f
        pkts.append((off, len(f)))
    assert a.drv.tx_batch(pkts) == 100
    got = []

    def step():
        a.nic.process()
        b.nic.process()
        for off, ln in b.drv.rx_batch(256):
            got.append(parse_test_frame(b.dma[off:off + ln]))
            b.drv.give_rx_buffers([off])
    assert _poll_until(lambda: len(got) >= 100, step=step)
    assert got == list(range(100))
    assert len(a.drv.tx_reclaim()) == 100
    wa.close()
    wb.close()


def _echo_child(make_wire, n):
    """In a forked child: echo n frames back on the wire, then exit."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            w = make_wire()
            seen = 0
            end = time.monotonic() + 10
            while seen < n and time.monotonic() < end:
                fr = w.recv(64)
                if fr:
                    w.send(fr)
                    seen += len(fr)
                else:
                    time.sleep(0.0005)
            code = 0 if seen == n else 2
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("kind", ["socket", "shm"])
def test_cable_ends_in_different_processes(kind, tmp_path):
    n = 300
    if kind == "socket":
        mine, theirs = socket_cable()
        fd = theirs.sock.fileno()
        pid = _echo_child(lambda: SocketWire.from_fd(fd), n)
        theirs.close()
    else:
        path = str(tmp_path / "cable")
        ShmCable.create(path, slots=512)
        mine = ShmWire(path, 0)
        pid = _echo_child(lambda: ShmWire(path, 1), n)
    frames = [make_test_frame(i, 64 + i) for i in range(n)]
    back = []
    for i in range(0, n, 50):
        mine.send(frames[i:i + 50])
        _poll_until(lambda: (back.extend(mine.recv(64)) or len(back) >= i + 50), timeout=5)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert [parse_test_frame(f) for f in back] == list(range(n))
    mine.close()


def test_shm_cable_full_drops_and_counts(tmp_path):
    path = str(tmp_path / "c")
    ShmCable.create(path, slots=8, slot_size=128)
    a, b = ShmWire(path, 0), ShmWire(path, 1)
    a.send([bytes([i]) * 60 for i in range(10)] + [bytes(200)])
    assert a.tx_frames == 8 and a.tx_dropped == 3
    assert [f[0] for f in b.recv(100)] == list(range(8))
    a.send([b"x" * 60])
    assert b.recv(5) == [b"x" * 60]
    a.close()
    b.close()


def _tap_possible():
    return os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")


def _arp_request(src_mac: bytes, spa: bytes, tpa: bytes) -> bytes:
    return (b"\xff" * 6 + src_mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + src_mac + spa + b"\x00" * 6 + tpa + bytes(18))


@pytest.mark.skipif(not _tap_possible(), reason="tap wire needs root, /dev/net/tun and iproute2")
def test_tap_in_namespace_answers_arp_through_the_nic():
    name = f"rltest{os.getpid()}"
    try:
        ns = NetNamespace(name)
    except WireUnavailable as e:
        pytest.skip(str(e))
    try:
        try:
            wire = TapWire(ns, ifname=f"rlt{os.getpid() % 100000}", addr="10.77.0.1/24")
        except WireUnavailable as e:
            pytest.skip(str(e))
        p = Port(wire)
        p.init()
        mac = b"\x02\x11\x22\x33\x44\x55"
        off = p.free.pop()
        f = _arp_request(mac, bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1]))
        p.dma[off:off + len(f)] = f
        assert p.drv.tx_batch([(off, len(f))]) == 1
        replies = []

        def step():
            p.nic.process()
            for o, ln in p.drv.rx_batch(32):
                fr = bytes(p.dma[o:o + ln])
                if fr[12:14] == b"\x08\x06" and fr[20:22] == b"\x00\x02":
                    replies.append(fr)
                p.drv.give_rx_buffers([o])
        assert _poll_until(lambda: bool(replies), timeout=5, step=step)
        assert replies[0][:6] == mac and replies[0][28:32] == bytes([10, 77, 0, 1])
        wire.close()
    finally:
        ns.close()
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert name not in out


def test_tap_refuses_clearly_without_privileges(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(WireUnavailable, match="root"):
        NetNamespace("rlnever")


def test_empty_datagrams_do_not_stall_the_frames_behind_them():
    """Found by the frames fuzzer (crashtest/fuzz/frames.py): each empty datagram ended
    a recv batch, so a peer's run of them held real frames back, one per process()."""
    a, b = socket_cable()
    try:
        b.send([b""] * 40 + [make_test_frame(1, 100)] + [b""] * 3 + [make_test_frame(2, 100)])
        got = a.recv(64)
        assert [parse_test_frame(f) for f in got] == [1, 2]
        assert a.recv(64) == []                 # nothing left, nothing made up
        b.close()
        assert a.recv(64) == []                 # EOF: no frame, and no endless loop
    finally:
        a.close()
