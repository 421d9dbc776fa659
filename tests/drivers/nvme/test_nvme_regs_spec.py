"""Register map, field codecs, entry formats, PRP walking, Identify structures."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, strategies as st

from redleaf.drivers.nvme import regs as R
from redleaf.drivers.nvme import spec as S


def test_register_offsets_match_the_spec():
    assert (R.CAP, R.VS, R.INTMS, R.INTMC, R.CC, R.CSTS, R.NSSR, R.AQA, R.ASQ, R.ACQ) == \
        (0x00, 0x08, 0x0C, 0x10, 0x14, 0x1C, 0x20, 0x24, 0x28, 0x30)
    assert R.sq_tail_doorbell(0) == 0x1000 and R.cq_head_doorbell(0) == 0x1004
    assert R.sq_tail_doorbell(1) == 0x1008 and R.cq_head_doorbell(1) == 0x100C
    # DSTRD = 2: stride 16 bytes
    assert R.sq_tail_doorbell(1, 2) == 0x1000 + 2 * 16
    assert R.cq_head_doorbell(1, 2) == 0x1000 + 3 * 16
    assert R.EMU_PCICMD >= R.DOORBELL_END and R.BAR_SIZE > R.EMU_ERRCNT
    assert R.max_qid_for_stride(0) == 511


@given(st.integers(1, 0xFFFF), st.integers(0, 1), st.integers(0, 255), st.integers(0, 15),
       st.integers(0, 1), st.integers(0, 255), st.integers(0, 15), st.integers(0, 15))
def test_cap_roundtrip(mqes, cqr, to, dstrd, nssrs, css, mpsmin, mpsmax):
    v = R.cap_encode(mqes, cqr=cqr, to=to, dstrd=dstrd, nssrs=nssrs, css=css,
                     mpsmin=mpsmin, mpsmax=mpsmax)
    f = R.cap_decode(v)
    assert (f.mqes, f.cqr, f.to, f.dstrd, f.nssrs, f.css, f.mpsmin, f.mpsmax) == \
        (mqes, cqr, to, dstrd, nssrs, css, mpsmin, mpsmax)
    assert f.max_entries == mqes + 1 and f.doorbell_stride == 4 << dstrd


def test_cap_bit_positions():
    v = R.cap_encode(0x3FF, cqr=1, to=0x14, dstrd=3, nssrs=1, css=1, mpsmin=0, mpsmax=4)
    assert v & 0xFFFF == 0x3FF and v >> 16 & 1 == 1 and v >> 24 & 0xFF == 0x14
    assert v >> 32 & 0xF == 3 and v >> 36 & 1 == 1 and v >> 37 & 1 == 1 and v >> 52 & 0xF == 4
    assert R.cap_decode(v).timeout_s == 10.0


@given(st.integers(0, 1), st.integers(0, 7), st.integers(0, 15), st.integers(0, 7),
       st.integers(0, 3), st.integers(0, 15), st.integers(0, 15))
def test_cc_roundtrip(en, css, mps, ams, shn, iosqes, iocqes):
    v = R.cc_encode(en=en, css=css, mps=mps, ams=ams, shn=shn, iosqes=iosqes, iocqes=iocqes)
    assert R.cc_decode(v) == (en, css, mps, ams, shn, iosqes, iocqes)


def test_cc_csts_aqa_bit_positions():
    v = R.cc_encode(en=1, mps=1, shn=1, iosqes=6, iocqes=4)
    assert v == 1 | 1 << 7 | 1 << 14 | 6 << 16 | 4 << 20
    assert R.cc_decode(v).page_size == 8192
    assert R.csts_encode(rdy=1, cfs=1, shst=2) == 0b1011
    assert R.csts_decode(0b1011) == (1, 1, 2, 0, 0)
    assert R.aqa_encode(31, 15) == 31 | 15 << 16 and R.aqa_decode(31 | 15 << 16) == (31, 15)
    assert R.vs_decode(R.NVME_VERSION) == (1, 4, 0)


def test_bar_accessor():
    buf = bytearray(R.BAR_SIZE)
    bar = R.Bar(buf)
    bar.write64(R.ASQ, 0x1234_5678_9ABC_D000)
    assert struct.unpack_from("<Q", buf, R.ASQ)[0] == 0x1234_5678_9ABC_D000
    bar.write32(R.CC, R.cc_encode(en=1))
    assert bar.cc().en == 1
    bar.set_bme(True)
    assert bar.read32(R.EMU_PCICMD) & R.PCICMD_BME
    n = bar.request_quiesce()
    assert not bar.read32(R.EMU_PCICMD) & R.PCICMD_BME and bar.read32(R.EMU_QREQ) == n
    with pytest.raises(ValueError):
        R.Bar(bytearray(16))
    with pytest.raises(ValueError):
        R.Bar(bytes(R.BAR_SIZE))


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.lists(st.integers(0, 2**32 - 1),
                                                                      min_size=6, max_size=6))
def test_sqe_roundtrip_and_numpy_layout(opc, cid, nsid, prp1, prp2, cdw):
    cmd = S.Command(opc, cid, nsid, prp1, prp2, *cdw)
    buf = bytearray(64)
    S.encode_sqe(buf, 0, cmd)
    assert S.decode_sqe(buf) == cmd
    a = np.frombuffer(buf, dtype=S.SQE_DTYPE)[0]
    assert (a["opc"], a["cid"], a["nsid"], a["prp1"], a["prp2"], a["cdw10"], a["cdw15"]) == \
        (opc, cid, nsid, prp1, prp2, cdw[0], cdw[5])
    # spec byte positions: CID in DW0 31:16, NSID DW1, PRP1 at byte 24, PRP2 at 32, CDW10 at 40
    assert struct.unpack_from("<I", buf, 0)[0] == opc | cid << 16
    assert struct.unpack_from("<QQI", buf, 24) == (prp1, prp2, cdw[0])


@given(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 1), st.integers(0, 0x7FFF))
def test_cqe_roundtrip(dw0, sqhd, sqid, cid, phase, status):
    c = S.Completion(dw0, 0, sqhd, sqid, cid, phase, status)
    buf = bytearray(16)
    S.encode_cqe(buf, 0, c)
    assert S.decode_cqe(buf) == c
    assert struct.unpack_from("<I", buf, 12)[0] == S.cqe_dw3(cid, phase, status)
    a = np.frombuffer(buf, dtype=S.CQE_DTYPE)[0]
    assert a["status"] & 1 == phase and a["status"] >> 1 == status


def test_status_helpers():
    st_ = S.ST_LBA_OUT_OF_RANGE
    assert S.status_code(st_) == (0, 0x80) and S.status_dnr(st_)
    assert S.status_code(S.ST_INVALID_QID) == (1, 0x01)
    assert S.status_code(S.ST_INVALID_QSIZE) == (1, 0x02)
    assert S.status_code(S.ST_DATA_TRANSFER_ERROR) == (0, 0x04)
    assert "LBA out of range" in S.status_str(st_)


def test_phase_advance_wraps():
    idx, ph = 0, 1
    seen = []
    for _ in range(7):
        idx, ph = S.advance(idx, ph, 3)
        seen.append((idx, ph))
    assert seen == [(1, 1), (2, 1), (0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]
    assert S.queue_full(0, 2, 3) and not S.queue_full(0, 1, 3)


def _lists(mem: dict):
    def read(addr, n):
        return [mem[addr + 8 * i] for i in range(n)]
    return read


def test_prp_single_page_and_offset():
    assert S.prp_segments(0x5000, 0, 4096, 4096, _lists({})) == [(0x5000, 4096)]
    assert S.prp_segments(0x5200, 0, 512, 4096, _lists({})) == [(0x5200, 512)]
    with pytest.raises(S.DmaFault) as e:
        S.prp_segments(0x5002, 0, 512, 4096, _lists({}))
    assert e.value.status == S.ST_PRP_OFFSET_INVALID


def test_prp1_prp2_two_pages():
    # PRP1 with offset, rest in PRP2
    assert S.prp_segments(0x5800, 0x9000, 4096, 4096, _lists({})) == [(0x5800, 2048), (0x9000, 2048)]
    # contiguous pages are merged
    assert S.prp_segments(0x5000, 0x6000, 8192, 4096, _lists({})) == [(0x5000, 8192)]
    with pytest.raises(S.DmaFault):
        S.prp_segments(0x5000, 0x6008, 8192, 4096, _lists({}))


def test_prp_list_and_chaining():
    page = 64   # small pages: 8 entries per list page
    mem = {}
    data_pages = [0x10000 + page * 3 * i for i in range(12)]   # scattered
    # first list page at 0x100: 7 data entries + chain pointer to 0x200
    for i in range(7):
        mem[0x100 + 8 * i] = data_pages[1 + i]
    mem[0x100 + 56] = 0x200
    for i in range(4):
        mem[0x200 + 8 * i] = data_pages[8 + i]
    length = 12 * page - 16
    segs = S.prp_segments(data_pages[0], 0x100, length, page, _lists(mem))
    assert sum(n for _, n in segs) == length
    assert [a for a, _ in segs] == data_pages
    assert segs[-1][1] == page - 16


def test_prp_build_roundtrip():
    prp1, pages = S.prp_build(0x5800, 3 * 4096, 4096)
    assert prp1 == 0x5800 and pages == [0x6000, 0x7000, 0x8000]
    assert S.prp_build(0x5000, 4096, 4096) == (0x5000, [])


def test_identify_roundtrip():
    c = S.IdentifyController(vid=0x1234, sn="SN42", mn="Model X", mdts=5, nn=1)
    b = c.encode()
    assert len(b) == 4096 and struct.unpack_from("<H", b, 0)[0] == 0x1234
    assert b[4:8] == b"SN42" and struct.unpack_from("<I", b, 516)[0] == 1 and b[77] == 5
    assert b[512] == 0x66 and b[513] == 0x44
    d = S.IdentifyController.decode(b)
    assert (d.vid, d.sn, d.mn, d.mdts, d.nn) == (0x1234, "SN42", "Model X", 5, 1)
    assert d.max_transfer(4096) == 32 * 4096
    ns = S.IdentifyNamespace(nsze=1000, ncap=1000, nuse=1000, lbaf=(S.LbaFormat(0, 9, 0),))
    nb = ns.encode()
    assert struct.unpack_from("<QQ", nb, 0) == (1000, 1000) and nb[128 + 2] == 9
    d = S.IdentifyNamespace.decode(nb)
    assert d.nsze == 1000 and d.lba_size == 512
