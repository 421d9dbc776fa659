"""Register-level behaviour of the emulated 82599 (no driver)."""
import numpy as np
import pytest

from redleaf.drivers.ixgbe import regs as R
from redleaf.drivers.ixgbe.descriptors import RingView, tx_encode_read
from redleaf.drivers.ixgbe.nic import Nic
from redleaf.drivers.ixgbe.wire import pair


@pytest.fixture
def dev():
    bar = bytearray(R.BAR_SIZE)
    dma = bytearray(1 << 20)
    mine, peer = pair()           # tests look at what reaches the other end of the cable
    nic = Nic(memoryview(bar), memoryview(dma), 4096, 1 << 20, mine)
    return bar, dma, nic, R.Regs(memoryview(bar)), peer


def test_register_offsets_match_datasheet():
    assert (R.CTRL, R.STATUS, R.EIMC, R.EEC, R.RDRXCTL, R.AUTOC, R.LINKS) == \
        (0x0, 0x8, 0x888, 0x10010, 0x2F00, 0x42A0, 0x42A4)
    assert (R.RXCTRL, R.HLREG0, R.FCTRL, R.DMATXCTL, R.RTTDCS) == (0x3000, 0x4240, 0x5080, 0x4A80, 0x4900)
    assert (R.SRRCTL(0), R.SRRCTL(15), R.SRRCTL(16), R.SRRCTL(64)) == (0x2100, 0x213C, 0x1414, 0xD014)
    assert (R.RDBAL(0), R.RDBAH(1), R.RDLEN(0), R.RDH(0), R.RDT(0), R.RXDCTL(0)) == \
        (0x1000, 0x1044, 0x1008, 0x1010, 0x1018, 0x1028)
    assert R.RDBAL(64) == 0xD000
    assert (R.TDBAL(0), R.TDBAH(0), R.TDLEN(0), R.TDH(0), R.TDT(2), R.TXDCTL(0)) == \
        (0x6000, 0x6004, 0x6008, 0x6010, 0x6098, 0x6028)
    assert (R.GPRC, R.GPTC, R.GORCL, R.GORCH, R.GOTCL, R.GOTCH, R.MPC(0), R.MPC(7)) == \
        (0x4074, 0x4080, 0x4088, 0x408C, 0x4090, 0x4094, 0x3FA0, 0x3FBC)
    assert (R.CTRL_RST, R.EEC_ARD, R.RDRXCTL_DMAIDONE, R.LINKS_UP, R.RXDCTL_ENABLE, R.TXDCTL_ENABLE) == \
        (0x04000000, 0x200, 0x8, 0x40000000, 0x02000000, 0x02000000)
    assert R.AUTOC_LMS_MASK == 0xE000 and R.AUTOC_AN_RESTART == 0x1000
    assert R.PCI_CMD >= R.BAR_REAL_SIZE                      # emulation words past the real BAR


def test_reset_self_clears_and_restores_defaults(dev):
    bar, dma, nic, r, _ = dev
    r.write32(R.FCTRL, 0x700)
    r.write32(R.EEC, 0)
    r.write32(R.RDRXCTL, 0)
    r.write32(R.CTRL, R.CTRL_RST)
    assert r.read32(R.CTRL) & R.CTRL_RST          # until the device gets to it
    assert nic.process() is True
    assert r.read32(R.CTRL) & R.CTRL_RST_MASK == 0
    assert r.read32(R.FCTRL) == 0
    assert r.read32(R.EEC) & R.EEC_ARD
    assert r.read32(R.RDRXCTL) & R.RDRXCTL_DMAIDONE
    assert r.read32(R.LINKS) & R.LINKS_UP == 0
    # PCI config survives a function reset
    r.write32(R.PCI_CMD, R.PCI_CMD_BME)
    r.write32(R.CTRL, R.CTRL_RST)
    nic.process()
    assert r.read32(R.PCI_CMD) & R.PCI_CMD_BME


def test_link_comes_up_after_autoneg_restart(dev):
    _, _, nic, r, _ = dev
    nic.link_delay = 3
    nic.process()
    assert not r.read32(R.LINKS) & R.LINKS_UP
    r.set_flags(R.AUTOC, R.AUTOC_AN_RESTART)
    ups = []
    for _ in range(6):
        nic.process()
        ups.append(bool(r.read32(R.LINKS) & R.LINKS_UP))
    assert ups == [False, False, False, True, True, True]
    assert r.read32(R.LINKS) & R.LINKS_SPEED_82599 == R.LINKS_SPEED_10G_82599
    assert not r.read32(R.AUTOC) & R.AUTOC_AN_RESTART       # self-clearing


def test_eimc_masks_eims(dev):
    _, _, nic, r, _ = dev
    r.write32(R.EIMS, 0xFF)
    r.write32(R.EIMC, 0x0F)
    nic.process()
    assert r.read32(R.EIMS) == 0xF0 and r.read32(R.EIMC) == 0


def test_stats_clear_on_read(dev):
    _, _, nic, r, _ = dev
    nic._stat(0, 5)                         # GPRC
    nic._stat(2, (7 << 32) + 100)           # GORC: 36-bit counter
    assert r.read32(R.GPRC) == 5
    assert r.read32(R.GPRC) == 0
    nic._stat(0, 2)
    assert r.read32(R.GPRC) == 2
    assert r.read32(R.GORCL) == 100
    assert r.read32(R.GORCH) == 7
    assert r.read32(R.GORCL) == 0 and r.read32(R.GORCH) == 0
    nic._stat(5, 9)                         # MPC(0)
    r.write32(R.CTRL, R.CTRL_RST)           # reset clears counters
    nic.process()
    assert r.read32(R.MPC(0)) == 0


def _enable_bme(r):
    r.write32(R.PCI_CMD, R.PCI_CMD_MSE | R.PCI_CMD_BME)


def test_enabling_queue_without_ring_is_a_device_error(dev):
    _, _, nic, r, _ = dev
    r.write32(R.RXDCTL(0), R.RXDCTL_ENABLE)
    r.write32(R.TXDCTL(0), R.TXDCTL_ENABLE)
    nic.process()
    assert nic.error_count == 2
    codes = [e.code for e in nic.errors]
    assert codes == [R.DevErr.RING_NOT_CONFIGURED, R.DevErr.RING_NOT_CONFIGURED]
    assert not r.read32(R.RXDCTL(0)) & R.RXDCTL_ENABLE   # refused
    cnt, last, _ = R.device_errors(memoryview(dev[0]))
    assert cnt == 2 and last == R.DevErr.RING_NOT_CONFIGURED


@pytest.mark.parametrize("base,length,srr,code", [
    (1 << 21, 1024, R.SRRCTL_DESCTYPE_ADV_ONEBUF | 2, R.DevErr.BAD_DMA_ADDR),     # outside window
    (0, 1024, R.SRRCTL_DESCTYPE_ADV_ONEBUF | 2, R.DevErr.BAD_DMA_ADDR),           # below dma_base
    (8192 + 64, 1024, R.SRRCTL_DESCTYPE_ADV_ONEBUF | 2, R.DevErr.RING_MISALIGNED),
    (8192, 1000, R.SRRCTL_DESCTYPE_ADV_ONEBUF | 2, R.DevErr.RING_MISALIGNED),
    (8192, 1024, 2, R.DevErr.BAD_SRRCTL),                                        # legacy descriptors
])
def test_bad_rx_ring_is_refused(dev, base, length, srr, code):
    _, _, nic, r, _ = dev
    r.write32(R.RDBAL(0), base & 0xFFFFFFFF)
    r.write32(R.RDBAH(0), base >> 32)
    r.write32(R.RDLEN(0), length)
    r.write32(R.SRRCTL(0), srr)
    r.write32(R.RXDCTL(0), R.RXDCTL_ENABLE)
    nic.process()
    assert [e.code for e in nic.errors] == [code]
    assert nic.rxq[0] is None


def _tx_queue(r, nic, n=16, base=8192):
    _enable_bme(r)
    r.write32(R.TDBAL(0), base)
    r.write32(R.TDLEN(0), n * 16)
    r.write32(R.DMATXCTL, R.DMATXCTL_TE)
    r.write32(R.TXDCTL(0), R.TXDCTL_ENABLE)
    nic.process()
    assert nic.txq[0] is not None


def test_tdt_beyond_ring_and_bad_buffer_are_errors(dev):
    _, dma, nic, r, wire = dev
    _tx_queue(r, nic)
    r.write32(R.TDT(0), 99)
    assert nic.process() is True
    assert nic.errors[-1].code == R.DevErr.TDT_OUT_OF_RANGE
    assert not r.read32(R.TXDCTL(0)) & R.TXDCTL_ENABLE
    # re-enable, then a descriptor pointing outside the DMA window
    r.write32(R.TDH(0), 0)
    r.write32(R.TDT(0), 0)
    r.write32(R.TXDCTL(0), R.TXDCTL_ENABLE)
    nic.process()
    ring = RingView(dma, 8192, 16)
    tx_encode_read(ring, np.array([0, 1]), np.array([65536, 5 << 20], dtype=np.uint64), np.array([60, 60]))
    r.write32(R.TDT(0), 2)
    nic.process()
    assert nic.errors[-1].code == R.DevErr.BAD_DMA_ADDR
    assert wire.pending() == 1                       # the good one went out
    assert r.read32(R.TDH(0)) == 1
    # a legacy (non-advanced) descriptor is refused too
    r.write32(R.TDH(0), 0)
    r.write32(R.TDT(0), 0)
    r.write32(R.TXDCTL(0), R.TXDCTL_ENABLE)
    nic.process()
    ring.q[0, 0] = 65536
    ring.d[0, 2] = 60                                # no DEXT/DTYP
    r.write32(R.TDT(0), 1)
    nic.process()
    assert nic.errors[-1].code == R.DevErr.BAD_TX_DESC


def test_multi_descriptor_tx_frame_and_padding(dev):
    _, dma, nic, r, wire = dev
    r.write32(R.HLREG0, R.HLREG0_TXPADEN)
    _tx_queue(r, nic)
    dma[65536:65536 + 30] = b"a" * 30
    dma[70000:70000 + 40] = b"b" * 40
    dma[80000:80000 + 10] = b"c" * 10
    ring = RingView(dma, 8192, 16)
    from redleaf.drivers.ixgbe import descriptors as D
    tx_encode_read(ring, np.array([0, 1, 2]), np.array([65536, 70000, 80000], dtype=np.uint64),
                   np.array([30, 40, 10]))
    ring.d[0, 2] = int(ring.d[0, 2]) & ~D.TXD_DCMD_EOP                    # frame = desc 0 + desc 1
    r.write32(R.TDT(0), 1)                              # only the first half posted: wait
    nic.process()
    assert wire.pending() == 0 and r.read32(R.TDH(0)) == 0
    r.write32(R.TDT(0), 3)
    nic.process()
    frames = wire.recv(10)
    assert frames == [b"a" * 30 + b"b" * 40, b"c" * 10 + bytes(50)]   # second padded to 60
    assert r.read32(R.TDH(0)) == 3
    assert (ring.d[:3, 3] & D.TXD_STAT_DD).all()
    assert r.read32(R.GPTC) == 2 and r.read32(R.GOTCL) == 70 + 60 + 8


def test_bme_clear_stops_dma_and_quiesce_is_acked(dev):
    bar, dma, nic, r, wire = dev
    _tx_queue(r, nic)
    ring = RingView(dma, 8192, 16)
    tok = R.quiesce_request(memoryview(bar))
    assert not R.quiesce_acked(memoryview(bar), tok)
    nic.process()
    assert R.quiesce_acked(memoryview(bar), tok)
    tx_encode_read(ring, np.array([0]), np.array([65536], dtype=np.uint64), np.array([60]))
    r.write32(R.TDT(0), 1)
    for _ in range(3):
        nic.process()
    assert wire.pending() == 0 and r.read32(R.TDH(0)) == 0 and ring.d[0, 3] & 1 == 0
    tok2 = R.quiesce_request(memoryview(bar))
    assert tok2 != tok and not R.quiesce_acked(memoryview(bar), tok2)
    nic.process()
    assert R.quiesce_acked(memoryview(bar), tok2)
    _enable_bme(r)                                   # DMA resumes once BME is set again
    nic.process()
    assert len(wire.recv(10)) == 1


def test_wire_exceptions_are_device_errors():
    class Broken:
        def send(self, frames): raise OSError("cable cut")
        def recv(self, max): raise OSError("cable cut")
        def fileno(self): return None
        def close(self): pass
    bar, dma = bytearray(R.BAR_SIZE), bytearray(1 << 20)
    nic = Nic(memoryview(bar), memoryview(dma), 4096, 1 << 20, Broken())
    r = R.Regs(memoryview(bar))
    _tx_queue(r, nic)
    ring = RingView(dma, 8192, 16)
    tx_encode_read(ring, np.array([0]), np.array([65536], dtype=np.uint64), np.array([60]))
    r.write32(R.TDT(0), 1)
    nic.process()
    assert {e.code for e in nic.errors} == {R.DevErr.WIRE_ERROR}
