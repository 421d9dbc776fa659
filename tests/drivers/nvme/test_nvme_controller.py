"""Controller state machine: reset handshake, admin commands, BME/quiesce, bad doorbells."""
from __future__ import annotations

import os

import pytest

from redleaf.drivers.nvme import regs as R
from redleaf.drivers.nvme import spec as S
from redleaf.drivers.nvme.controller import NvmeController
from redleaf.drivers.nvme.driver_core import ControllerFatal, NvmeDriverCore
from redleaf.drivers.nvme.store import MemoryBlockStore

from .nvme_rig import Rig


def enable_admin(rig: Rig, *, asq=None, acq=None, aqa=R.aqa_encode(7, 7), mps=0):
    bar = rig.bar
    asq = rig.dma_base if asq is None else asq
    acq = rig.dma_base + 0x1000 if acq is None else acq
    bar.write32(R.AQA, aqa)
    bar.write64(R.ASQ, asq)
    bar.write64(R.ACQ, acq)
    bar.write32(R.CC, R.cc_encode(en=1, mps=mps))
    rig.ctrl.process()
    return bar.csts()


def test_power_on_registers():
    rig = Rig(init=False)
    cap = rig.bar.cap()
    assert cap.mqes == 1023 and cap.cqr == 1 and cap.css & 1 and cap.dstrd == 0 and cap.to > 0
    assert R.vs_decode(rig.bar.read32(R.VS)) == (1, 4, 0)
    assert rig.bar.read32(R.CSTS) == 0
    assert rig.bar.read32(R.EMU_DEVSTAT) & R.DEVSTAT_DMA_STOPPED   # BME off at power-on


def test_reset_handshake():
    rig = Rig(init=False)
    assert enable_admin(rig).rdy == 1
    # a doorbell write, then disable: queues dropped, doorbells zeroed, RDY cleared
    rig.bar.write32(R.sq_tail_doorbell(0), 0)
    rig.bar.write32(R.CC, 0)
    assert rig.bar.csts().rdy == 1            # not until the device notices
    rig.ctrl.process()
    assert rig.bar.csts() == (0, 0, 0, 0, 0)
    assert bytes(rig.bar_buf[0x1000:0x1100]) == bytes(0x100)
    assert rig.ctrl.stats["resets"] == 1
    assert enable_admin(rig).rdy == 1


@pytest.mark.parametrize("kw", [
    dict(aqa=R.aqa_encode(0, 7)),                       # ASQS of 1 entry
    dict(aqa=0),
    dict(asq=0x10000 + 0x800),                          # not page aligned
    dict(acq=0),                                        # below dma_base
    dict(asq=(4 << 20) - 0x1000),                       # beyond dma_limit
    dict(mps=9),                                        # > CAP.MPSMAX
])
def test_bad_enable_sets_cfs_and_reset_clears_it(kw):
    rig = Rig(init=False)
    csts = enable_admin(rig, **kw)
    assert csts.rdy == 0 and csts.cfs == 1
    rig.bar.write32(R.CC, 0)
    rig.ctrl.process()
    assert rig.bar.csts().cfs == 0
    # a driver recovers from this state
    rig.drv.initialize(rig.ctrl.process)
    assert rig.drv.ready


def test_driver_init_reads_identify():
    rig = Rig()
    d = rig.drv
    assert d.identify_controller.mn == "RedLeaf emulated NVMe" and d.identify_controller.nn == 1
    assert d.identify_controller.vid == S.IdentifyController().vid
    assert d.lba_size == 4096 and d.nblocks == 256
    assert d.queue_depth == 63 and d.space() == 63
    assert rig.bar.read32(R.EMU_PCICMD) & R.PCICMD_BME
    assert rig.bar.csts().rdy == 1


def test_512_byte_lbas():
    rig = Rig(lba_shift=9, disk_blocks=1000)
    assert rig.drv.lba_size == 512 and rig.drv.nblocks == 1000


def adm(rig, opc, **kw):
    return rig.drv.admin(rig.ctrl.process, opc, **kw)


def test_admin_queue_errors():
    rig = Rig()
    q = rig.alloc(0x1000, 0x1000)[0]
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=0 | 7 << 16, cdw11=1)[0] == S.ST_INVALID_QID
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=1 | 7 << 16, cdw11=1)[0] == S.ST_INVALID_QID
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=99 | 7 << 16, cdw11=1)[0] == S.ST_INVALID_QID
    # qid 2 was not allocated by Set Features (number of queues = 1)
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=2 | 7 << 16, cdw11=1)[0] == S.ST_INVALID_QID
    assert adm(rig, S.ADMIN_DELETE_CQ, cdw10=1)[0] == S.ST_INVALID_QUEUE_DELETION
    assert adm(rig, S.ADMIN_DELETE_SQ, cdw10=1)[0] == 0
    assert adm(rig, S.ADMIN_DELETE_CQ, cdw10=1)[0] == 0
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=1 | 0 << 16, cdw11=1)[0] == S.ST_INVALID_QSIZE
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=1 | 5000 << 16, cdw11=1)[0] == S.ST_INVALID_QSIZE
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q, cdw10=1 | 7 << 16, cdw11=0)[0] == S.ST_INVALID_FIELD
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=q + 8, cdw10=1 | 7 << 16, cdw11=1)[0] == S.ST_PRP_OFFSET_INVALID
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=rig.dma_limit, cdw10=1 | 7 << 16,
               cdw11=1)[0] == S.ST_DATA_TRANSFER_ERROR
    assert adm(rig, S.ADMIN_CREATE_SQ, prp1=q, cdw10=1 | 7 << 16, cdw11=1 | 3 << 16)[0] == S.ST_CQ_INVALID
    assert adm(rig, S.ADMIN_CREATE_SQ, prp1=q, cdw10=1 | 7 << 16, cdw11=1 | 1 << 16)[0] == S.ST_CQ_INVALID
    assert adm(rig, S.ADMIN_DELETE_SQ, cdw10=3)[0] == S.ST_INVALID_QID
    assert adm(rig, S.ADMIN_DELETE_SQ, cdw10=0)[0] == S.ST_INVALID_QID
    assert adm(rig, S.ADMIN_DELETE_CQ, cdw10=0)[0] == S.ST_INVALID_QID
    assert adm(rig, 0x7F)[0] == S.ST_INVALID_OPCODE
    assert adm(rig, S.ADMIN_IDENTIFY, prp1=q, cdw10=0x55)[0] == S.ST_INVALID_FIELD
    assert adm(rig, S.ADMIN_IDENTIFY, nsid=2, prp1=q, cdw10=S.CNS_NAMESPACE)[0] == S.ST_INVALID_NAMESPACE
    assert adm(rig, S.ADMIN_IDENTIFY, prp1=rig.dma_limit + 64,
               cdw10=S.CNS_CONTROLLER)[0] == S.ST_DATA_TRANSFER_ERROR
    assert adm(rig, S.ADMIN_SET_FEATURES, cdw10=S.FEAT_NUM_QUEUES, cdw11=0xFFFF)[0] == S.ST_INVALID_FIELD
    assert adm(rig, S.ADMIN_SET_FEATURES, cdw10=0x7E)[0] == S.ST_INVALID_FIELD
    assert adm(rig, S.ADMIN_GET_LOG_PAGE, prp1=q, cdw10=0x7F | 127 << 16)[0] == S.ST_INVALID_LOG_PAGE
    # the controller survived all of it
    assert rig.ctrl.ready and not rig.ctrl.fatal


def test_admin_features_logs_identify_lists():
    rig = Rig()
    q, mv = rig.alloc(0x1000, 0x1000)
    assert adm(rig, S.ADMIN_GET_FEATURES, cdw10=S.FEAT_VOLATILE_WC) == (0, 1)
    # number of queues cannot change while I/O queues exist
    assert adm(rig, S.ADMIN_SET_FEATURES, cdw10=S.FEAT_NUM_QUEUES)[0] == S.ST_COMMAND_SEQUENCE_ERROR
    assert adm(rig, S.ADMIN_SET_FEATURES, cdw10=S.FEAT_VOLATILE_WC | 1 << 31,
               cdw11=1)[0] == S.ST_FEATURE_NOT_SAVEABLE
    assert adm(rig, S.ADMIN_SET_FEATURES, cdw10=S.FEAT_VOLATILE_WC, cdw11=0) == (0, 0)
    assert adm(rig, S.ADMIN_GET_FEATURES, cdw10=S.FEAT_VOLATILE_WC) == (0, 0)
    st, dw0 = adm(rig, S.ADMIN_GET_FEATURES, cdw10=S.FEAT_NUM_QUEUES)
    assert st == 0 and dw0 == 0        # driver asked for one SQ/CQ pair (zero-based 0)
    mv[:] = b"\xff" * 4096
    assert adm(rig, S.ADMIN_GET_LOG_PAGE, prp1=q, cdw10=S.LOG_SMART | 127 << 16)[0] == 0
    assert bytes(mv[:512]) == bytes(512) and mv[512] == 0xFF
    assert adm(rig, S.ADMIN_IDENTIFY, prp1=q, cdw10=S.CNS_ACTIVE_NS_LIST)[0] == 0
    assert bytes(mv[:8]) == b"\x01\0\0\0\0\0\0\0"
    assert adm(rig, S.ADMIN_ABORT, cdw10=1 | 5 << 16) == (0, 1)


def test_delete_and_recreate_io_queues():
    rig = Rig()
    d = rig.drv
    assert adm(rig, S.ADMIN_DELETE_SQ, cdw10=1)[0] == 0
    assert adm(rig, S.ADMIN_DELETE_CQ, cdw10=1)[0] == 0
    qs = d.io_queue_size
    d._sq[:] = bytes(len(d._sq))
    d._cq[:] = bytes(len(d._cq))
    assert adm(rig, S.ADMIN_CREATE_CQ, prp1=d._cq_off, cdw10=1 | (qs - 1) << 16, cdw11=3)[0] == 0
    assert adm(rig, S.ADMIN_CREATE_SQ, prp1=d._sq_off, cdw10=1 | (qs - 1) << 16, cdw11=1 | 1 << 16)[0] == 0
    d._sq_tail = d._sq_rung = 0
    d._cq_head, d._cq_phase = 0, 1
    off, _ = rig.buf(4096)
    d.submit_read(0, 1, off, "x")
    assert rig.run() == [("x", 0)]


def test_bme_cleared_means_no_dma_and_quiesce_ack():
    rig = Rig()
    off, mv = rig.buf(4096)
    rig.store.buf[:4096] = b"\xAB" * 4096
    rig.drv.submit_read(0, 1, off, "r")
    rig.drv.ring()
    n = rig.bar.request_quiesce()              # supervisor: driver died
    before = bytes(rig.dma_buf)
    assert rig.ctrl.process() is False
    assert bytes(rig.dma_buf) == before        # no SQ fetch, no data, no CQE
    assert rig.bar.quiesce_acked(n)
    for _ in range(3):
        rig.ctrl.process()
    assert bytes(rig.dma_buf) == before
    # a second quiesce request is acknowledged too
    n2 = rig.bar.request_quiesce()
    rig.ctrl.process()
    assert rig.bar.quiesce_acked(n2) and n2 == n + 1
    # bus mastering back on: the pending command runs
    rig.bar.set_bme(True)
    assert rig.ctrl.process() is True
    assert not rig.bar.read32(R.EMU_DEVSTAT) & R.DEVSTAT_DMA_STOPPED
    assert rig.drv.reap() == [("r", 0)] and bytes(mv) == b"\xAB" * 4096


def test_restarted_driver_reinitialises_and_reissues():
    rig = Rig()
    old = rig.drv
    bufs = [rig.buf(4096) for _ in range(4)]
    for i, (off, mv) in enumerate(bufs):
        mv[:] = bytes([i + 1]) * 4096
        old.submit_write(10 + i, 1, off, ("w", i))
    old.ring()
    n = rig.bar.request_quiesce()              # driver crashes before the device ran
    rig.ctrl.process()
    assert rig.bar.quiesce_acked(n)
    pending = old.inflight()
    assert [r.tag for r in pending] == [("w", i) for i in range(4)]
    # fresh driver (new memory), resets the device, re-issues what was in flight
    new = NvmeDriverCore(rig.bar_buf, rig.alloc, io_queue_size=16)
    new.initialize(rig.ctrl.process)
    for r in pending:
        new.resubmit(r)
    res = new.wait_all(rig.ctrl.process)
    assert sorted(res) == sorted((("w", i), 0) for i in range(4))
    for i in range(4):
        assert rig.store.buf[(10 + i) * 4096:(11 + i) * 4096] == bytes([i + 1]) * 4096


def test_invalid_doorbell_value_without_aer_is_fatal():
    rig = Rig()
    rig.bar.write32(R.sq_tail_doorbell(1), 5000)          # >= queue size
    assert rig.ctrl.process() is False
    assert rig.bar.csts().cfs == 1 and rig.ctrl.stats["doorbell_errors"] == 1
    assert rig.drv.fatal()
    # everything stops until reset; a re-init recovers
    rig.drv.initialize(rig.ctrl.process)
    off, _ = rig.buf(4096)
    rig.drv.submit_read(1, 1, off, 1)
    assert rig.run() == [(1, 0)]


@pytest.mark.parametrize("what", ["unaligned", "no_such_queue", "cq_head_beyond", "beyond_last_queue"])
def test_invalid_doorbell_writes(what):
    rig = Rig()
    if what == "unaligned":
        rig.bar_buf[R.sq_tail_doorbell(1) + 2] = 1          # a byte store mid-register
    elif what == "no_such_queue":
        rig.bar.write32(R.sq_tail_doorbell(3), 1)
    elif what == "cq_head_beyond":
        rig.bar.write32(R.cq_head_doorbell(1), 5)           # nothing was posted
    else:
        rig.bar.write32(R.cq_head_doorbell(200), 1)         # far beyond max_queues
    rig.ctrl.process()
    assert rig.bar.csts().cfs == 1
    assert "doorbell" in rig.ctrl.last_error


def test_invalid_doorbell_with_aer_posts_async_event():
    rig = Rig()
    d = rig.drv
    # issue an Asynchronous Event Request without waiting for it
    cid = 0x4242
    S.SQE.pack_into(d._asq, d._asq_tail << 6, S.ADMIN_ASYNC_EVENT, 0, cid, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    d._asq_tail += 1
    rig.bar.write32(R.sq_tail_doorbell(0), d._asq_tail)
    assert rig.ctrl.process() is False                    # held, no completion yet
    rig.bar.write32(R.cq_head_doorbell(2), 1)             # queue 2 does not exist
    assert rig.ctrl.process() is True                     # the AER completed
    evs = d._reap_admin()
    assert len(evs) == 1 and evs[0].cid == cid and evs[0].status == 0
    assert evs[0].dw0 & 7 == S.AER_TYPE_ERROR
    assert evs[0].dw0 >> 8 & 0xFF == S.AER_ERR_INVALID_DOORBELL_REGISTER
    assert evs[0].dw0 >> 16 & 0xFF == S.LOG_ERROR_INFO
    assert not rig.ctrl.fatal and rig.bar.csts().rdy == 1
    off, _ = rig.buf(4096)
    d.submit_read(0, 1, off, "ok")
    assert rig.run() == [("ok", 0)]


def test_doorbell_stride_gap_write_is_detected():
    rig = Rig(dstrd=1)
    assert rig.bar.cap().dstrd == 1 and rig.drv.ready
    off, _ = rig.buf(4096)
    rig.drv.submit_read(0, 1, off, 1)
    assert rig.run() == [(1, 0)]
    rig.bar.write32(R.DOORBELL_BASE + 4, 1)               # between SQ0 tail and CQ0 head
    rig.ctrl.process()
    assert rig.bar.csts().cfs == 1


def test_nssr_subsystem_reset():
    rig = Rig()
    rig.bar.write32(R.NSSR, 0x1234)                        # wrong magic: ignored
    rig.ctrl.process()
    assert rig.bar.csts().rdy == 1
    rig.bar.write32(R.NSSR, R.NSSR_MAGIC)
    rig.ctrl.process()
    csts = rig.bar.csts()
    assert csts.rdy == 0 and csts.nssro == 1
    assert rig.bar.read32(R.CC) == 0                      # registers reset
    rig.ctrl.process()
    assert rig.bar.csts().rdy == 0                         # stays disabled
    rig.drv.initialize(rig.ctrl.process)
    assert rig.bar.csts().rdy == 1


def test_shutdown_flushes_and_reports_complete():
    rig = Rig()
    flushes = rig.store.flushes
    rig.drv.shutdown(rig.ctrl.process)
    assert rig.bar.csts().shst == R.SHST_COMPLETE and rig.store.flushes == flushes + 1
    rig.drv.initialize(rig.ctrl.process)
    assert rig.bar.csts().shst == 0 and rig.bar.csts().rdy == 1


def test_interrupt_mask():
    rig = Rig()
    off, _ = rig.buf(4096)
    rig.bar.write32(R.INTMS, 1)
    rig.drv.submit_read(0, 1, off, 1)
    rig.drv.ring()
    assert rig.ctrl.process() is False                     # completion posted, irq masked
    assert rig.ctrl.interrupt_mask == 1 and rig.bar.read32(R.INTMS) == 0
    assert rig.drv.reap() == [(1, 0)]
    rig.bar.write32(R.INTMC, 1)
    rig.drv.submit_read(0, 1, off, 2)
    rig.drv.ring()
    irq0 = rig.bar.read32(R.EMU_IRQCNT)
    assert rig.ctrl.process() is True
    assert rig.bar.read32(R.EMU_IRQCNT) == irq0 + 1


def test_constructor_validation():
    bar, dma = bytearray(R.BAR_SIZE), bytearray(1 << 16)
    st = MemoryBlockStore(1 << 20)
    with pytest.raises(ValueError):
        NvmeController(bar, dma, 0, 1 << 20, st)
    with pytest.raises(ValueError):
        NvmeController(bar, dma, 0, 1 << 16, st, lba_shift=10)
    with pytest.raises(ValueError):
        NvmeController(bytearray(64), dma, 0, 1 << 16, st)


def test_fatal_during_admin_wait_raises_in_driver():
    rig = Rig()
    rig.bar.write32(R.sq_tail_doorbell(5), 1)              # will make the device fatal
    with pytest.raises(ControllerFatal):
        adm(rig, S.ADMIN_GET_FEATURES, cdw10=S.FEAT_VOLATILE_WC)


from hypothesis import given, settings, strategies as st  # noqa: E402

_REG_OFFSETS = [R.CC, R.AQA, R.ASQ, R.ASQ + 4, R.ACQ, R.ACQ + 4, R.NSSR, R.INTMS, R.INTMC,
                R.EMU_PCICMD, R.EMU_QREQ, 0x1000, 0x1004, 0x1008, 0x100C, 0x1010, 0x1FFC]


@settings(max_examples=int(os.environ.get("NVME_FUZZ_EXAMPLES", "200")), deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("reg"), st.sampled_from(_REG_OFFSETS), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("small"), st.sampled_from([R.sq_tail_doorbell(0), R.cq_head_doorbell(0),
                                                  R.sq_tail_doorbell(1), R.cq_head_doorbell(1)]),
              st.integers(0, 70)),
    st.tuples(st.just("sqe"), st.integers(0, 63), st.binary(min_size=64, max_size=64)),
    st.tuples(st.just("process"), st.just(0), st.just(0)),
), max_size=40))
def test_garbage_never_raises(actions):
    rig = Rig()
    d = rig.drv
    for kind, a, v in actions:
        if kind in ("reg", "small"):
            rig.bar.write32(a, v)
        elif kind == "sqe":
            # garbage into both submission queues (admin and I/O)
            d._sq[(a % d.io_queue_size) * 64:(a % d.io_queue_size + 1) * 64] = v
            d._asq[(a % d._aq_size) * 64:(a % d._aq_size + 1) * 64] = v
        else:
            rig.ctrl.process()
    for _ in range(3):
        rig.ctrl.process()                  # must not raise, whatever happened
    assert rig.ctrl.stats["internal_errors"] == 0, rig.ctrl.last_error
    # and a fresh driver can always bring the device back
    rig.bar.write32(R.NSSR, 0)
    new = NvmeDriverCore(rig.bar_buf, rig.alloc, io_queue_size=8)
    new.initialize(rig.ctrl.process)
    off, _ = rig.buf(4096)
    new.submit_read(0, 1, off, "ok")
    assert new.wait_all(rig.ctrl.process) == [("ok", 0)]


def test_an_idle_controller_needs_no_timer():
    """Work reaches the controller only by register and doorbell writes (each
    followed by a ring of its doorbell), so an idle controller sleeps until rung."""
    rig = Rig()
    assert rig.ctrl.next_deadline() is None
    off, _ = rig.buf(4096)
    rig.drv.submit_read(0, 1, off, "r")
    assert rig.run() == [("r", 0)]
    assert rig.ctrl.next_deadline() is None


@pytest.mark.parametrize("off, value", [(R.CSTS, R.CSTS_RDY | R.CSTS_CFS), (R.CSTS, 0xFFFFFFFF),
                                        (R.CAP, 0), (R.CAP + 4, 0xFFFFFFFF), (R.VS, 7)])
def test_host_writes_to_read_only_registers_are_ignored(off, value):
    """Found by the nvme-regs fuzzer (crashtest/fuzz/nvme_regs.py): a driver that wrote
    CSTS left a stale RDY/CFS there, and no restarted driver could reset the device."""
    rig = Rig()
    errors = rig.ctrl.stats["errors"]
    rig.bar.write32(off, value)
    rig.ctrl.process()
    assert rig.ctrl.stats["errors"] == errors + 1 and "read-only" in rig.ctrl.last_error
    new = NvmeDriverCore(rig.bar_buf, rig.alloc, io_queue_size=8)
    new.initialize(rig.ctrl.process)
    buf, _ = rig.buf(4096)
    new.submit_read(0, 1, buf, "ok")
    assert new.wait_all(rig.ctrl.process) == [("ok", 0)]
