"""The whole-batch fast paths (NIC model, pktgen wire, driver core, forwarder) do
what the general paths do: the same frames, counters, write-backs and errors."""
import copy

import numpy as np
from hypothesis import given, settings, strategies as st

from redleaf.drivers.ixgbe import descriptors as D
from redleaf.drivers.ixgbe import l2fwd
from redleaf.drivers.ixgbe import regs as R
from redleaf.drivers.ixgbe.nic import Nic
from redleaf.drivers.ixgbe.sim import Port
from redleaf.drivers.ixgbe.pktgen import PktGenWire


# ------------------------------------------------------------------ ring helpers
@given(st.integers(1, 64), st.integers(0, 10 ** 6), st.integers(0, 200))
@settings(max_examples=200, deadline=None)
def test_ring_get_and_set_wrap(n, start, count):
    start %= n
    count %= n + 1
    col = np.arange(n, dtype=np.int64) * 10
    got = D.ring_get(col, start, count, n)
    assert got.tolist() == [col[(start + i) % n] for i in range(count)]
    vals = np.arange(count, dtype=np.int64) + 1000
    D.ring_set(col, start, vals, n)
    assert [int(col[(start + i) % n]) for i in range(count)] == vals.tolist()
    D.ring_set(col, start, (count, -1), n)                  # a scalar for `count` slots
    assert all(col[(start + i) % n] == -1 for i in range(count))
    assert (col != -1).sum() == n - count


# ------------------------------------------------------------------ forward
@given(st.lists(st.integers(0, 200), min_size=0, max_size=40, unique=True))
@settings(max_examples=50, deadline=None)
def test_forward_swaps_macs_and_touches_like_the_naive_loop(slots):
    rng = np.random.default_rng(len(slots))
    mem = rng.integers(0, 256, 64 * 256, dtype=np.uint8)
    want = mem.copy()
    offs = np.array(slots, dtype=np.int64) * 64 + 3
    for o in offs.tolist():
        hdr = want[o:o + 12].copy()
        hdr[1:2] += 1                            # uint8: wraps
        want[o:o + 6], want[o + 6:o + 12] = hdr[6:12], hdr[0:6]
    l2fwd.forward(mem, offs)
    assert (mem == want).all()


# ------------------------------------------------------------------ pktgen sink
def _frames(gen, n):
    return gen.recv_array(n).copy()


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_sink_fast_path_counts_like_the_frame_by_frame_check(data):
    """Whatever arrives (intact, corrupted, duplicated, reordered), _sink gives the
    counters _sink_any gives."""
    gen = PktGenWire()
    batches = [_frames(gen, data.draw(st.integers(1, 20))) for _ in range(data.draw(st.integers(1, 4)))]
    ops = data.draw(st.lists(st.tuples(st.sampled_from(["flip", "dup", "swap", "none"]),
                                       st.integers(0, 10 ** 6), st.integers(0, 59)), max_size=6))
    for kind, i, byte in ops:
        b = batches[i % len(batches)]
        r = i % b.shape[0]
        if kind == "flip":
            b[r, byte] ^= 0x40
        elif kind == "dup" and b.shape[0] > 1:
            b[(r + 1) % b.shape[0]] = b[r]
        elif kind == "swap" and b.shape[0] > 1:
            b[[r, (r + 1) % b.shape[0]]] = b[[(r + 1) % b.shape[0], r]]
    fast, slow = copy.deepcopy(gen), copy.deepcopy(gen)
    for b in batches:
        fast._sink(b.copy())
        slow._sink_any(b.copy())
    assert fast.sink_stats() == slow.sink_stats()


def test_pktgen_discard_takes_sequence_numbers_and_tokens():
    t = [0.0]
    gen = PktGenWire(rate_pps=1000, burst=10, clock=lambda: t[0])
    assert gen.recv_array(4).shape[0] == 4
    assert gen.discard(100) == 6                       # only the burst's remaining tokens
    assert gen.discard(5) == 0
    t[0] += 0.005                                   # 5 more tokens
    f = gen.recv_array(10)
    assert f.shape[0] == 5
    assert f[0, 16:24].view("<u8")[0] == 10         # the dropped frames had 4..9
    gen2 = PktGenWire(count=8)
    assert gen2.discard(5) == 5 and gen2.recv_array(10).shape[0] == 3 and gen2.discard(1) == 0
    gen2.send_array(gen2.recv_array(0))
    assert gen2.sink_stats()["missing"] == 8


# ------------------------------------------------------------------ NIC RX/TX over pktgen
def _port(n=32, batch=16):
    gen = PktGenWire(count=0)
    p = Port(gen, num_rx_desc=n, num_tx_desc=n, batch=batch, num_bufs=4 * n)
    p.init()
    gen.count = None
    return p, gen


def _stat(p, reg):
    return p.drv.regs.read32(reg)


def test_rx_fills_the_ring_drops_the_rest_and_wraps():
    p, gen = _port(n=32, batch=16)
    drv, nic = p.drv, p.nic
    got = []
    for _ in range(12):                             # the ring wraps several times
        nic.process()
        nic.process()                               # finds the ring nearly full: drops
        offs, lens = drv.rx_batch_arrays(64)
        assert (lens == 60).all()
        for o in offs.tolist():
            got.append(int(np.frombuffer(p.dma, np.uint8, 8, o + 16).view("<u8")[0]))
        drv.give_rx_buffers(offs)
    assert got == sorted(got) and len(set(got)) == len(got)
    missed = _stat(p, R.MPC(0))
    assert missed > 0                                # a full ring drops, counted
    assert len(got) + missed == gen.next_seq        # every generated frame: received or missed
    assert nic.error_count == 0


def test_rx_bad_buffer_address_is_a_device_error_after_the_good_ones():
    p, gen = _port(n=32, batch=16)
    drv, nic = p.drv, p.nic
    head = nic.rxq[0].head
    ring = drv.rx_ring
    ring.q[(head + 3) % 32, 0] = 1 << 40            # outside the DMA window
    nic.process()
    assert nic.errors[-1].code == R.DevErr.BAD_DMA_ADDR
    assert nic.rxq[0] is None                        # the queue is stopped
    assert _stat(p, R.GPRC) == 3                     # the three before it were delivered
    assert _stat(p, R.MPC(0)) == 16 - 3


def test_tx_fast_path_sends_writes_back_and_wraps():
    p, gen = _port(n=32, batch=16)
    drv, nic = p.drv, p.nic
    sent = 0
    for _ in range(10):
        nic.process()
        offs, lens = drv.rx_batch_arrays(16)
        l2fwd.forward(p.mem, offs)
        sent += drv.tx_batch_arrays(offs, lens)
        nic.process()
        drv.give_rx_buffers(drv.tx_reclaim_arrays())
    s = gen.sink_stats()
    assert s["frames"] == sent and s["bad"] == 0 and s["dup"] == 0
    assert _stat(p, R.GPTC) == sent and nic.error_count == 0


def test_tx_odd_batches_take_the_general_path_with_the_same_errors():
    p, gen = _port(n=32, batch=16)
    drv, nic = p.drv, p.nic
    nic.process()
    offs, lens = drv.rx_batch_arrays(8)
    lens = lens.copy()
    lens[2] = 59                                     # mixed lengths: not the fast path
    assert drv.tx_batch_arrays(offs[:4], lens[:4]) == 4
    nic.process()
    assert gen.sink_bad == 1 and gen.sink_frames == 3
    # a bad address in the middle of an otherwise uniform batch
    ring, t = drv.tx_ring, drv._tx_post % 32
    assert drv.tx_batch_arrays(offs[4:8], lens[4:8]) == 4
    ring.q[(t + 2) % 32, 0] = 1 << 40
    nic.process()
    assert nic.errors[-1].code == R.DevErr.BAD_DMA_ADDR
    assert gen.sink_frames == 5                      # the two before it went out
    assert nic.txq[0] is None


def test_rx_without_a_queue_counts_every_frame_as_missed():
    bar, dma = bytearray(R.BAR_SIZE), bytearray(1 << 20)
    gen = PktGenWire()
    nic = Nic(memoryview(bar), memoryview(dma), 4096, 1 << 20, gen, batch=32)
    nic.process()
    r = R.Regs(memoryview(bar))
    assert r.read32(R.MPC(0)) == 32 and gen.next_seq == 32


def test_rx_ready_and_waiting_follow_the_ring():
    p, gen = _port(n=32, batch=16)
    drv, nic = p.drv, p.nic
    assert drv.rx_waiting() and not drv.rx_ready()  # buffers given, nothing written back
    nic.process()
    assert drv.rx_ready()
    offs, _ = drv.rx_batch_arrays(64)
    assert offs.size == 16 and not drv.rx_ready() and drv.rx_waiting()
    drv.give_rx_buffers(offs)
    gen.count = gen.next_seq                        # the generator stops
    nic.process()
    assert not drv.rx_ready() and drv.rx_waiting()


# ------------------------------------------------------------------ one RX/TX path, two data movers
class _ListOnly:
    """The same generator/sink seen as a plain wire: recv/send of lists only (no
    recv_array, send_array or discard), so the NIC moves frames one by one."""

    def __init__(self, gen):
        self.gen = gen

    def recv(self, max):
        return self.gen.recv(max)

    def send(self, frames):
        self.gen.send([bytes(f) for f in frames])

    def fileno(self):
        return None

    def close(self):
        pass


_OPS = st.lists(st.one_of(
    st.tuples(st.just("rx"), st.integers(0, 40)),                 # process, collect, give back
    st.tuples(st.just("bad_rx_addr"), st.integers(0, 31), st.sampled_from([1 << 40, 2**64 - 16, 8])),
    st.tuples(st.just("rdt"), st.integers(0, 40)),                # RDT, maybe beyond the ring
    st.tuples(st.just("rxen"), st.booleans()),
    st.tuples(st.just("bme"), st.booleans()),
    st.tuples(st.just("tx"), st.lists(st.integers(1, 3000), min_size=1, max_size=12)),
    st.tuples(st.just("bad_tx"), st.integers(0, 31), st.sampled_from(["addr", "wrap", "type", "len0", "noeop"])),
    st.tuples(st.just("pad"), st.booleans()),
), max_size=25)


def _run_rig(array_wire: bool, frame_size: int, ops):
    gen = PktGenWire(frame_size=frame_size, count=0)
    wire = gen if array_wire else _ListOnly(gen)
    p = Port(wire, num_rx_desc=32, num_tx_desc=32, batch=16, num_bufs=160, dma_size=1 << 20)
    p.init()
    gen.count = None
    drv, nic, r = p.drv, p.nic, p.drv.regs
    spare = [o for o in p.free]
    for op in ops:
        kind = op[0]
        if kind == "rx":
            nic.process()
            offs, _lens = drv.rx_batch_arrays(op[1])
            drv.give_rx_buffers(offs)
        elif kind == "bad_rx_addr":
            drv.rx_ring.q[op[1], 0] = op[2]             # far, wrapping past 2**64, below
        elif kind == "rdt":
            r.write32(R.RDT(0), op[1])
        elif kind == "rxen":
            v = r.read32(R.RXCTRL)
            r.write32(R.RXCTRL, v | R.RXCTRL_RXEN if op[1] else v & ~R.RXCTRL_RXEN)
        elif kind == "bme":
            v = r.read32(R.PCI_CMD)
            r.write32(R.PCI_CMD, v | R.PCI_CMD_BME if op[1] else v & ~R.PCI_CMD_BME)
        elif kind == "tx":
            k = min(len(op[1]), len(spare))
            offs = np.array(spare[:k], dtype=np.int64)
            lens = np.array(op[1][:k], dtype=np.int64)
            p.mem[offs[:, None] + np.arange(60)] = gen.template[:60]   # a recognisable head
            n = drv.tx_batch_arrays(offs, np.minimum(lens, 2048))
            del spare[:n]
            nic.process()
            spare += drv.tx_reclaim_arrays().tolist()
        elif kind == "bad_tx":
            i = op[1]
            if op[2] == "addr":
                drv.tx_ring.q[i, 0] = 1 << 40
            elif op[2] == "wrap":
                drv.tx_ring.q[i, 0] = 2**64 - 16
            elif op[2] == "type":
                drv.tx_ring.d[i, 2] &= ~np.uint32(D.TXD_DCMD_DEXT)
            elif op[2] == "len0":
                drv.tx_ring.d[i, 2] &= ~np.uint32(0xFFFF)
            else:
                drv.tx_ring.d[i, 2] &= ~np.uint32(D.TXD_DCMD_EOP)
            r.write32(R.TDT(0), (i + 1) % 32)
            nic.process()
        elif kind == "pad":
            v = r.read32(R.HLREG0)
            r.write32(R.HLREG0, v | R.HLREG0_TXPADEN if op[1] else v & ~R.HLREG0_TXPADEN)
    return (bytes(p.dma), bytes(p.bar[:R.BAR_REAL_SIZE]), [(e.code, e.queue, e.arg, e.message) for e in nic.errors],
            gen.next_seq, gen.rx_frames, gen.sink_stats())


@given(st.sampled_from([60, 64, 1514, 3000]), _OPS)
@settings(max_examples=150, deadline=None)
def test_rx_and_tx_move_frames_alike_as_arrays_and_one_by_one(frame_size, ops):
    """The NIC's one RX and one TX path give the same DMA memory, registers,
    counters, device errors and wire-side counts whether the wire hands over
    frames as one array (scatter/gather, discard without building) or as a list
    (a copy a frame): full rings, bad buffer addresses, RDT beyond the ring,
    RXEN/BME off, oversize frames (3000 > the 2 KiB buffer), bad TX descriptors,
    frames that need padding."""
    assert _run_rig(True, frame_size, ops) == _run_rig(False, frame_size, ops)


# ------------------------------------------------------------------ idle: when the device needs a call
def test_next_deadline_says_when_an_idle_nic_needs_a_call_without_a_doorbell():
    t = [0.0]
    gen = PktGenWire(rate_pps=1000, burst=4, count=0, clock=lambda: t[0])
    p = Port(gen, num_rx_desc=32, num_tx_desc=32, batch=16, num_bufs=128)
    nic, drv = p.nic, p.drv
    nic.process()
    r = drv.regs
    r.write32(R.AUTOC, r.read32(R.AUTOC) | R.AUTOC_AN_RESTART)
    nic.process()
    assert nic.next_deadline() == 0.0                # the link comes up on the next calls
    p.init()
    gen.count = None
    assert nic.next_deadline() == 0.0                # free descriptors, tokens in the bucket
    nic.process()                                    # takes the burst (4 frames)
    assert nic.next_deadline() == 0.001              # the next token, at 1000 pps
    t[0] += 0.0015
    assert nic.next_deadline() == 0.0
    gen.count = gen.next_seq                         # the generator has stopped
    assert nic.next_deadline() is None
    gen.count = None
    r.write32(R.RDT(0), nic.rxq[0].head)             # a full ring: only the driver frees it
    assert nic.next_deadline() is None
    r.write32(R.RXCTRL, 0)                           # receive off: frames are only missed
    assert nic.next_deadline() is None


def test_a_nic_on_a_wire_with_a_readable_fd_needs_no_timer():
    from redleaf.drivers.ixgbe.wire import LoopbackWire, udp_pair

    a, b = udp_pair()
    try:
        for wire in (a, LoopbackWire()):
            p = Port(wire, num_rx_desc=32, num_tx_desc=32, num_bufs=128)
            p.init()
            p.nic.process()
            assert p.nic.next_deadline() is None
    finally:
        a.close()
        b.close()
