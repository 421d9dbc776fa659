import numpy as np
from hypothesis import given, settings, strategies as st

from redleaf.drivers.ixgbe import descriptors as D


def ring(n=16):
    buf = bytearray(n * 16 + 256)
    return buf, D.RingView(buf, 128, n)


def test_dtypes_are_16_bytes_and_alias():
    for dt in (D.RX_READ, D.RX_WB, D.TX_READ, D.TX_WB):
        assert dt.itemsize == 16
    buf, r = ring()
    r.rx_read["pkt_addr"][3] = 0x1122334455667788
    assert r.q[3, 0] == 0x1122334455667788
    assert bytes(buf[128 + 48:128 + 56]) == (0x1122334455667788).to_bytes(8, "little")


def test_rx_read_roundtrip_and_hdr_addr_clears_dd():
    _, r = ring()
    idx = np.array([0, 5, 15])
    r.d[idx, 2] = D.RXD_STAT_DD
    D.rx_encode_read(r, idx, np.array([4096, 8192, 12288], dtype=np.uint64))
    assert D.rx_decode_read(r, idx).tolist() == [4096, 8192, 12288]
    assert (r.rx_wb["status_error"][idx] & D.RXD_STAT_DD == 0).all()
    assert r.rx_read["hdr_addr"][idx].tolist() == [0, 0, 0]


def test_rx_writeback_roundtrip():
    _, r = ring()
    idx = D.ring_indices(14, 4, 16)
    assert idx.tolist() == [14, 15, 0, 1]
    D.rx_encode_wb(r, idx, np.array([60, 1514, 64, 100]))
    st_, ln = D.rx_decode_wb(r, idx)
    assert ln.tolist() == [60, 1514, 64, 100]
    assert (st_ == D.RXD_STAT_DD | D.RXD_STAT_EOP).all()
    assert r.rx_wb["length"][idx].tolist() == [60, 1514, 64, 100]
    assert r.rx_wb["vlan"][idx].tolist() == [0] * 4


def test_tx_read_and_writeback_roundtrip():
    _, r = ring()
    idx = np.arange(3, 9)
    addr = np.arange(6, dtype=np.uint64) * 2048 + 65536
    lens = np.array([60, 61, 1000, 1514, 64, 9000])
    D.tx_encode_read(r, idx, addr, lens)
    a, cmd, ol = D.tx_decode_read(r, idx)
    assert a.tolist() == addr.tolist()
    assert (cmd & D.TXD_DTALEN_MASK).tolist() == lens.tolist()
    assert ((cmd & D.TXD_DTYP_MASK) == D.TXD_DTYP_DATA).all()
    for bit in (D.TXD_DCMD_EOP, D.TXD_DCMD_IFCS, D.TXD_DCMD_RS, D.TXD_DCMD_DEXT):
        assert (cmd & bit).all()
    assert (ol >> D.TXD_PAYLEN_SHIFT).tolist() == lens.tolist()
    assert (D.tx_decode_wb(r, idx) & D.TXD_STAT_DD == 0).all()
    D.tx_encode_wb(r, idx[:2])
    assert (D.tx_decode_wb(r, idx) & D.TXD_STAT_DD).tolist() == [1, 1, 0, 0, 0, 0]
    assert r.tx_wb["status"][idx[:2]].tolist() == [1, 1]


def test_leading_true():
    assert D.leading_true(np.array([], bool)) == 0
    assert D.leading_true(np.array([True, True])) == 2
    assert D.leading_true(np.array([True, False, True])) == 1
    assert D.leading_true(np.array([False, True])) == 0


@given(st.integers(1, 4096), st.integers(0, 10 ** 6), st.integers(0, 5000))
@settings(max_examples=200, deadline=None)
def test_ring_indices_wrap(n, start, count):
    start %= n
    count %= n + 1
    idx = D.ring_indices(start, count, n)
    assert idx.tolist() == [(start + i) % n for i in range(count)]
    assert ((idx >= 0) & (idx < n)).all()
