"""driver_core + Nic end to end over in-process wires."""
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from redleaf.drivers.ixgbe import l2fwd
from redleaf.drivers.ixgbe import regs as R
from redleaf.drivers.ixgbe.driver_core import DriverError, IxgbeDriver
from redleaf.drivers.ixgbe.nullnet import NullNet
from redleaf.drivers.ixgbe.sim import BumpAllocator, Port
from redleaf.drivers.ixgbe.frames import make_test_frame, parse_test_frame
from redleaf.drivers.ixgbe.pktgen import PktGenWire
from redleaf.drivers.ixgbe.wire import LoopbackWire, ShmCable, ShmWire, pair, socket_cable


def write_frames(port, seqs, lengths):
    pkts = []
    for s, ln in zip(seqs, lengths):
        b = port.free.pop()
        f = make_test_frame(s, ln)
        port.dma[b:b + ln] = f
        pkts.append((b, ln))
    return pkts


def collect(port, got):
    """Receive a batch, check every frame, hand the buffers back to the RX pool."""
    bufs = port.drv.rx_batch(512)
    for off, ln in bufs:
        seq = parse_test_frame(port.dma[off:off + ln])
        assert seq is not None, "corrupted frame"
        got.append(seq)
        port.dma[off:off + 64] = bytes(64)        # poison: a stale re-read would fail the CRC
    port.drv.give_rx_buffers([off for off, _ in bufs])


def test_init_sequence_brings_link_and_queues_up():
    p = Port(LoopbackWire())
    p.init()
    st_ = p.nic.status()
    assert st_["link_up"] and st_["bme"] and st_["rx_queues"] == [True] and st_["tx_queues"] == [True]
    assert p.drv.link_speed_mbps() == 10000 and p.drv.reset_done()
    r = p.drv.regs
    assert r.read32(R.FCTRL) & (R.FCTRL_BAM | R.FCTRL_MPE | R.FCTRL_UPE) == 0x700
    assert r.read32(R.RDT(0)) == 511 and r.read32(R.RDH(0)) == 0
    assert p.nic.error_count == 0


def test_loopback_checksummed_no_loss():
    p = Port(LoopbackWire())
    p.init()
    rng = random.Random(1)
    sent, got = [], []
    seq = 0
    for _ in range(40):
        n = rng.randint(1, 100)
        lens = [rng.randint(60, 1514) for _ in range(n)]
        pkts = write_frames(p, range(seq, seq + n), lens)
        acc = p.drv.tx_batch(pkts)
        for off, _ in pkts[acc:]:
            p.free.append(off)
        sent += list(range(seq, seq + acc))
        seq += n
        p.nic.process()
        p.free += p.drv.tx_reclaim()
        collect(p, got)
    assert got == sent                     # in order, nothing lost, nothing duplicated
    s = p.drv.stats()
    assert s["rx_packets"] == s["tx_packets"] == len(sent) and s["rx_missed"] == 0
    assert s["rx_bytes"] == s["tx_bytes"]
    assert p.nic.error_count == 0


@pytest.mark.parametrize("cable", ["pair", "socket", "shm"])
def test_two_nics_cabled(cable, tmp_path):
    if cable == "pair":
        wa, wb = pair()
    elif cable == "socket":
        wa, wb = socket_cable()
    else:
        path = str(tmp_path / "cable")
        ShmCable.create(path, slots=1024)
        wa, wb = ShmWire(path, 0), ShmWire(path, 1)
    a, b = Port(wa), Port(wb)
    a.init()
    b.init()
    got = []
    sent = 0
    for round_ in range(20):
        pkts = write_frames(a, range(sent, sent + 50), [60 + (round_ * 37 + i) % 1400 for i in range(50)])
        assert a.drv.tx_batch(pkts) == 50
        sent += 50
        for _ in range(3):
            a.nic.process()
            b.nic.process()
        a.free += a.drv.tx_reclaim()
        collect(b, got)
    for _ in range(5):
        b.nic.process()
        collect(b, got)
    assert got == list(range(sent))
    assert b.drv.stats()["rx_packets"] == a.drv.stats()["tx_packets"] == sent
    for w in (wa, wb):
        w.close()


def test_full_rx_ring_drops_are_counted_in_mpc():
    p = Port(LoopbackWire(), num_rx_desc=64)
    p.init()
    pkts = write_frames(p, range(200), [64] * 200)
    assert p.drv.tx_batch(pkts) == 200
    p.nic.process()                         # 200 frames arrive, the ring holds 63
    got = []
    collect(p, got)
    s = p.drv.stats()
    assert got == list(range(63))
    assert s["rx_missed"] == 200 - 63 and s["rx_packets"] == 63 and s["tx_packets"] == 200
    # the ring is refilled: traffic flows again
    p.free += p.drv.tx_reclaim()
    pkts = write_frames(p, range(1000, 1010), [64] * 10)
    p.drv.tx_batch(pkts)
    p.nic.process()
    got = []
    collect(p, got)
    assert got == list(range(1000, 1010))


def test_oversize_frames_counted_in_roc():
    a_w, b_w = pair()
    p = Port(a_w)
    p.init()
    b_w.send([bytes(2000), make_test_frame(7, 100)])
    p.nic.process()
    got = []
    collect(p, got)
    assert got == [7]
    assert p.drv.stats()["rx_oversize"] == 1


def test_rx_pool_exhaustion_and_refill():
    a_w, b_w = pair()
    p = Port(a_w, num_rx_desc=32)
    p.init(rx_bufs=8)                       # only 8 buffers: device owns 8 descriptors
    b_w.send([make_test_frame(i, 64) for i in range(20)])
    p.nic.process()
    got = []
    for off, ln in p.drv.rx_batch(64):
        got.append(parse_test_frame(p.dma[off:off + ln]))
    assert got == list(range(8))
    assert p.drv.stats()["rx_missed"] == 12
    p.drv.give_rx_buffers(p.free[:16])
    del p.free[:16]
    b_w.send([make_test_frame(i, 64) for i in range(100, 120)])
    p.nic.process()
    assert len(p.drv.rx_batch(64)) == 16


def test_pktgen_through_l2fwd():
    gen = PktGenWire(count=0)                      # silent while the driver initialises
    p = Port(gen)
    p.init()
    gen.count = 5000
    for _ in range(200):
        p.nic.process()
        l2fwd.forward_step(p.drv, p.drv, p.mem, batch=64)
    for _ in range(20):                            # drain what is still in the rings
        p.nic.process()
        l2fwd.forward_step(p.drv, p.drv, p.mem, batch=64)
    s = gen.sink_stats()
    st_ = p.drv.stats()
    assert s["generated"] == 5000
    assert s["bad"] == 0 and s["dup"] == 0 and s["reordered"] == 0
    assert s["frames"] == st_["tx_packets"] > 1000
    assert s["missing"] == st_["rx_missed"]        # every loss is a counted drop
    assert s["frames"] + st_["rx_missed"] == 5000
    assert st_["tx_bytes"] == s["frames"] * 64     # 60 + FCS


def test_pktgen_rate_limit():
    t = [0.0]
    gen = PktGenWire(rate_pps=1000, burst=10, clock=lambda: t[0])
    assert len(gen.recv(100)) == 10
    assert gen.recv(100) == []
    t[0] += 0.005
    assert len(gen.recv(100)) == 5


def test_pktgen_sink_detects_corruption_dups_and_gaps():
    gen = PktGenWire()
    frames = gen.recv(10)
    bad = bytearray(frames[3])
    bad[40] ^= 1
    gen.send(frames[:3] + [bytes(bad)] + frames[5:] + frames[:1])
    s = gen.sink_stats()
    assert s["bad"] == 1 and s["dup"] == 1 and s["lost"] == 2 and s["reordered"] == 1


def test_l2fwd_swaps_macs_in_place():
    mem = np.zeros(4096, dtype=np.uint8)
    f = make_test_frame(1, 64, dst=b"\xaa" * 6, src=b"\xbb" * 6)
    mem[100:164] = np.frombuffer(f, np.uint8)
    mem[1000:1064] = np.frombuffer(f, np.uint8)
    l2fwd.forward(mem, np.array([100, 1000]), touch=False)
    out = mem[100:164].tobytes()
    assert out[:6] == b"\xbb" * 6 and out[6:12] == b"\xaa" * 6 and out[12:] == f[12:]
    assert parse_test_frame(out) == 1
    l2fwd.forward(mem, np.array([100]), touch=True)
    assert mem[100:106].tobytes() == b"\xaa" * 6 and mem[107] == 0xbc   # touched byte moved to src


def test_nullnet_returns_sent_buffers():
    n = NullNet()
    assert n.tx_batch([(4096, 60), (8192, 70), (12288, 80)]) == 3
    assert n.rx_batch(2) == [(4096, 60), (8192, 70)]
    assert n.rx_batch(10) == [(12288, 80)]
    assert n.rx_batch(10) == [] and n.tx_reclaim() == []
    assert n.stats()["tx_packets"] == 3


def test_misprogramming_never_raises_from_the_device():
    p = Port(LoopbackWire())
    p.init()
    r = p.drv.regs
    r.write32(R.RDT(0), 100000)            # RDT beyond the ring
    p.drv.tx_batch(write_frames(p, [1], [64]))
    p.nic.process()
    assert p.nic.errors[-1].code == R.DevErr.RDT_OUT_OF_RANGE
    assert R.device_errors(memoryview(p.bar))[1] == R.DevErr.RDT_OUT_OF_RANGE
    # TX buffer outside the DMA window
    p.drv.tx_batch([(len(p.dma) + 4096, 64)])
    p.nic.process()
    assert p.nic.errors[-1].code == R.DevErr.BAD_DMA_ADDR
    assert p.nic.status()["tx_queues"] == [False]
    # a restarted driver re-initialises the device and everything works again
    drv2 = IxgbeDriver(memoryview(p.bar), p.alloc, step=p.nic.process)
    p.drv = drv2
    p.init()
    assert drv2.stats()["tx_packets"] == 0
    got = []
    p.drv.tx_batch(write_frames(p, [5, 6], [64, 64]))
    p.nic.process()
    collect(p, got)
    assert got == [5, 6]


def test_driver_reports_refused_ring():
    bar, dma = bytearray(R.BAR_SIZE), bytearray(1 << 20)
    from redleaf.drivers.ixgbe.nic import Nic
    nic = Nic(memoryview(bar), memoryview(dma), 1 << 19, 1 << 20, LoopbackWire())
    alloc = BumpAllocator(memoryview(dma), 4096, 1 << 20)     # rings below the device's window
    drv = IxgbeDriver(memoryview(bar), alloc, step=nic.process)
    with pytest.raises(DriverError, match="BAD_DMA_ADDR"):
        drv.init([600000 + i * 2048 for i in range(512)])


def test_bme_cleared_then_driver_restart():
    a_w, b_w = pair()
    p = Port(a_w)
    p.init()
    bar = memoryview(p.bar)
    tok = R.quiesce_request(bar)          # supervisor: driver died
    p.nic.process()
    assert R.quiesce_acked(bar, tok)
    p.drv.tx_batch([(p.free[0], 64)])     # the dead driver's last doorbell
    before = bytes(p.dma)
    b_w.send([make_test_frame(i, 64) for i in range(10)])   # traffic keeps arriving
    for _ in range(3):
        p.nic.process()
    assert bytes(p.dma) == before         # no DMA at all: rings and buffers untouched
    assert b_w.recv(10) == []             # nothing transmitted
    assert p.drv.stats()["rx_missed"] == 10
    assert p.drv.rx_batch(10) == []
    # restart: new driver sets BME again in init
    drv2 = IxgbeDriver(bar, p.alloc, step=p.nic.process)
    p.drv = drv2
    p.init()
    b_w.send([make_test_frame(i, 64) for i in range(10)])
    p.nic.process()
    got = []
    collect(p, got)
    assert got == list(range(10))


@given(st.lists(st.tuples(st.sampled_from(["tx", "proc", "rx", "reclaim"]), st.integers(1, 40)),
                min_size=1, max_size=60))
@settings(max_examples=40, deadline=None)
def test_ring_wraparound_conserves_frames(ops):
    """Random interleavings over tiny rings: every frame sent is received intact
    exactly once or counted as a drop; the counters never let RDT catch RDH."""
    p = Port(LoopbackWire(), dma_size=1 << 20, num_rx_desc=8, num_tx_desc=8, num_bufs=64, batch=16)
    p.init()
    sent = seq = 0
    got = []
    for op, k in ops:
        if op == "tx":
            pkts = write_frames(p, range(seq, seq + min(k, len(p.free))), [64] * min(k, len(p.free)))
            acc = p.drv.tx_batch(pkts)
            p.free += [o for o, _ in pkts[acc:]]
            seq += len(pkts)
            sent += acc
        elif op == "proc":
            p.nic.process()
        elif op == "rx":
            for off, ln in p.drv.rx_batch(k):
                got.append(parse_test_frame(p.dma[off:off + ln]))
                p.free.append(off)
        else:
            p.free += p.drv.tx_reclaim()
        d = p.drv
        assert d._rx_recv <= d._rx_tail <= d._rx_fill <= d._rx_recv + 8
        assert d._rx_tail <= d._rx_recv + 7
        assert 0 <= d._tx_post - d._tx_clean <= 7
    for _ in range(4):
        p.nic.process()
        p.free += p.drv.tx_reclaim()
        for off, ln in p.drv.rx_batch(64):
            got.append(parse_test_frame(p.dma[off:off + ln]))
            p.free.append(off)
    assert None not in got
    assert len(set(got)) == len(got)
    assert got == sorted(got)
    s = p.drv.stats()
    assert s["tx_packets"] == sent
    assert len(got) + s["rx_missed"] == sent
    assert p.nic.error_count == 0


def test_loopback_cost_probe_runs():
    from redleaf.drivers.ixgbe.sim import loopback_cost
    r = loopback_cost(batch=32, seconds=0.05)
    assert r["packets"] > 0 and r["errors"] == 0 and r["rx_missed"] == 0


def test_a_pass_that_only_drops_frames_is_not_work():
    gen = PktGenWire(count=0)
    p = Port(gen)
    p.init(rx_bufs=64)
    gen.count = 10_000
    assert p.nic.process() is True                 # 64 frames DMAed, the rest dropped
    assert p.nic.process() is False                # ring full: only drops (the shell may sleep)
    st_ = p.drv.stats()
    assert st_["rx_missed"] == gen.next_seq - 64 > 0
    assert len(p.drv.rx_batch(100)) == 64          # and what was DMAed is intact


def test_reset_hands_back_every_buffer_and_the_nic_works_again():
    """reset(): the device forgets the rings (no DMA into the returned buffers), every
    buffer the driver held comes back exactly once, and traffic flows again on the same
    rings (what the driver domain does when its client goes away)."""
    p = Port(LoopbackWire())
    p.init(rx_bufs=600)                                  # 511 in the ring, the rest in the pool
    given = set(p.drv.buffers_held())
    pkts = write_frames(p, range(100), [60] * 100)
    given |= {b for b, _ in pkts}
    assert p.drv.tx_batch(pkts[:80]) == 80               # 80 in flight, not reclaimed
    rings = (p.drv.rx_ring_off, p.drv.tx_ring_off)
    held = p.drv.reset()
    assert sorted(held.tolist()) == sorted(set(held.tolist())), "a buffer handed back twice"
    assert set(held.tolist()) == given - {b for b, _ in pkts[80:]}
    assert p.drv.buffers_held() == [] and (p.drv.rx_ring_off, p.drv.tx_ring_off) == rings
    for _ in range(3):
        p.nic.process()           # the 80 queued before the reset are forgotten: never sent
    p.drv.give_rx_buffers(held[:200].tolist())
    got = []
    assert p.drv.tx_batch(pkts[80:]) == 20
    for _ in range(5):
        p.nic.process()
        collect(p, got)
    assert got == list(range(80, 100)) and p.nic.error_count == 0   # (loopback: a sent 0..79 would be here)
