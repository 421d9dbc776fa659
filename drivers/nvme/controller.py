"""The emulated NVMe controller, as a pure state machine.

``NvmeController.process()`` does all pending work and returns; it never blocks and
never lets a Python exception escape for anything the host did (bad registers, bad
commands, bad DMA addresses, garbage doorbells).  The host process that wraps it
calls ``process()`` whenever a doorbell or register may have changed (after a
wake-up, or in a poll loop) and raises an interrupt when it returns True.

Model
-----
* ``bar`` (>= ``regs.BAR_SIZE`` bytes) is the shared register file.  On
  construction the controller "powers on": it zeroes the BAR and writes CAP/VS.
* ``dma`` is the whole exchange-heap mapping; a DMA address is a byte offset into
  it and must lie in ``[dma_base, dma_limit)``.  A data buffer outside the window
  completes the command with *Data Transfer Error*; an admin queue outside the
  window (or misconfigured) makes the enable fail with CSTS.CFS.
* CC.EN 0->1: validate AQA/ASQ/ACQ/CC, set CSTS.RDY (or CSTS.CFS on a bad config).
  CC.EN 1->0: delete every queue, zero the doorbells, clear RDY/CFS/SHST (the reset
  handshake; hosts wait for RDY=0 *and* CFS=0 after writing EN=0).
* CC.SHN != 0 while enabled: flush the backing store, CSTS.SHST = complete.
* NSSR = "NVMe": subsystem reset (like EN 1->0, plus CSTS.NSSRO).
* Bus mastering: while EMU_PCICMD.BME is 0 the controller performs no DMA at all
  (no SQ fetch, no data transfer, no CQ write); it sets EMU_DEVSTAT.DMA_STOPPED and
  copies EMU_QREQ into EMU_QACK (quiesce acknowledge).  Queue state is kept; a
  driver re-initialising the device resets it (EN=0) *before* setting BME again.
* Doorbells are detected by comparing the doorbell window with the last value
  seen.  A write to a doorbell of a queue that does not exist, between doorbells
  (DSTRD > 0), a value >= the queue size, an SQ tail that overruns the head or a CQ
  head beyond the posted entries is an *invalid doorbell write*: the write is
  ignored and, as the spec says, an Asynchronous Event (error, "invalid doorbell
  register"/"invalid doorbell write value") completes an outstanding Asynchronous
  Event Request.  If none is outstanding the controller enters the fatal state
  (CSTS.CFS = 1) and stops until reset.
* CAP, VS and CSTS are the device's: a host write to them is ignored (the model
  puts its values back at the next ``process()`` and counts a device error).
* Commands execute synchronously inside ``process()``; a completion is posted as
  soon as the CQ has room (a full CQ stalls the SQs bound to it).
"""
from __future__ import annotations

import struct

import numpy as np

from . import regs as R
from . import spec as S
from .spec import DmaFault
from .store import BlockStore
from redleaf.shared_heap.batch import count_nonzero

#: below this many queued commands the per-command loop (`_run_sq`) is cheaper
#: than the vectorised batch (`_run_io_batch`); the two give the same results
VEC_MIN = 4


class _CQ:
    __slots__ = ("qid", "base", "size", "mem", "u32", "head", "tail", "phase", "ien", "iv",
                 "dbi", "nsq", "dw")

    def __init__(self, qid, base, size, mem, ien, iv, dbi):
        self.qid = qid
        self.base = base
        self.size = size
        self.mem = mem
        self.u32 = mem.cast("I")
        self.dw = np.frombuffer(mem, dtype=np.uint32, count=size * 4).reshape(size, 4)
        self.head = 0
        self.tail = 0
        self.phase = 1
        self.ien = ien
        self.iv = iv
        self.dbi = dbi
        self.nsq = 0


class _SQ:
    __slots__ = ("qid", "base", "size", "mem", "head", "tail", "cq", "dbi", "w")

    def __init__(self, qid, base, size, mem, cq, dbi):
        self.qid = qid
        self.base = base
        self.size = size
        self.mem = mem
        self.w = np.frombuffer(mem, dtype=np.uint32, count=size * 16).reshape(size, 16)
        self.head = 0
        self.tail = 0
        self.cq = cq
        self.dbi = dbi


_FEATURE_DEFAULTS = {
    S.FEAT_ARBITRATION: 0, S.FEAT_POWER_MGMT: 0, S.FEAT_TEMP_THRESHOLD: 0x0157,
    S.FEAT_ERROR_RECOVERY: 0, S.FEAT_VOLATILE_WC: 1, S.FEAT_IRQ_COALESCING: 0,
    S.FEAT_IRQ_CONFIG: 0, S.FEAT_WRITE_ATOMICITY: 0, S.FEAT_ASYNC_EVENT_CFG: 0,
}


class NvmeController:
    """Emulated NVMe controller with one namespace (NSID 1) on ``backing``.

    ``max_queues`` is the number of I/O queue pairs (qids 1..max_queues); ``mqes`` the
    largest queue size in entries (CAP.MQES = mqes - 1); ``lba_shift`` 12 (4096-byte
    blocks, default) or 9.  ``backing.size`` must be a multiple of the block size
    (a trailing partial block is not exposed).
    """

    def __init__(self, bar, dma, dma_base: int, dma_limit: int, backing: BlockStore, *,
                 max_queues: int = 16, mqes: int = 1024, dstrd: int = 0, lba_shift: int = 12,
                 mdts: int = 7, timeout_units: int = 20, serial: str = "REDLEAF0001",
                 model: str = "RedLeaf emulated NVMe") -> None:
        self.bar = R.Bar(bar)
        self._u32 = self.bar.u32
        d = memoryview(dma)
        if d.readonly:
            raise ValueError("DMA buffer must be writable")
        self.dma = d.cast("B") if d.format != "B" or d.ndim != 1 else d
        if not 0 <= dma_base <= dma_limit <= len(self.dma):
            raise ValueError("need 0 <= dma_base <= dma_limit <= len(dma)")
        if lba_shift not in (9, 12):
            raise ValueError("lba_shift must be 9 (512 B) or 12 (4 KiB)")
        if not 2 <= mqes <= 0x10000:
            raise ValueError("mqes must be in 2..65536")
        if not 1 <= max_queues <= R.max_qid_for_stride(dstrd):
            raise ValueError(f"max_queues must be in 1..{R.max_qid_for_stride(dstrd)} for DSTRD {dstrd}")
        self.dma_base = dma_base
        self.dma_limit = dma_limit
        self.store = backing
        self.max_queues = max_queues
        self.mqes = mqes
        self.dstrd = dstrd
        self.lba_shift = lba_shift
        self.nsze = backing.size >> lba_shift
        self.mpsmin, self.mpsmax = 0, 4
        self.mdts = mdts
        self.max_transfer = (1 << mdts) * (1 << (12 + self.mpsmin)) if mdts else 1 << 62
        self.identify_ctrl = S.IdentifyController(sn=serial, mn=model, mdts=mdts,
                                                  ver=R.NVME_VERSION, nn=1)
        self.identify_ns = S.IdentifyNamespace(
            nsze=self.nsze, ncap=self.nsze, nuse=self.nsze, nlbaf=0, flbas=0,
            lbaf=(S.LbaFormat(0, lba_shift, 0),))
        self._cap = R.cap_encode(mqes - 1, cqr=1, to=timeout_units, dstrd=dstrd, nssrs=1,
                                 css=1, mpsmin=self.mpsmin, mpsmax=self.mpsmax)
        sw = 1 << dstrd                                  # doorbell stride in 32-bit words
        self._stride_words = sw
        self._db_words = 2 * (max_queues + 1) * sw
        self._db_w0 = R.DOORBELL_BASE >> 2
        self._dbmv = self.bar.mv[R.DOORBELL_BASE:R.DOORBELL_BASE + 4 * self._db_words]
        # the rest of the doorbell window: no queue can exist there, it must stay zero
        self._db_rest = self.bar.mv[R.DOORBELL_BASE + 4 * self._db_words:R.DOORBELL_END]
        # statistics
        self.vec_min = VEC_MIN
        self.stats = {"commands": 0, "completions": 0, "interrupts": 0, "dma_errors": 0,
                      "doorbell_errors": 0, "resets": 0, "errors": 0,
                      "internal_errors": 0}
        self.last_error = ""
        self._power_on()

    # ------------------------------------------------------------------ state
    def _power_on(self) -> None:
        self.bar.mv[:R.BAR_SIZE] = bytes(R.BAR_SIZE)
        self.bar.write64(R.CAP, self._cap)
        self.bar.write32(R.VS, R.NVME_VERSION)
        self._ro = (self._u32[0], self._u32[1], self._u32[2])   # CAP low, CAP high, VS
        self._cc = 0
        self._csts = 0
        self._intmask = 0
        self._bme = False
        self._clear_state()
        self._quiesce()

    def _clear_state(self) -> None:
        self._sqs: list[_SQ | None] = [None] * (self.max_queues + 1)
        self._cqs: list[_CQ | None] = [None] * (self.max_queues + 1)
        self._active_sqs: list[_SQ] = []
        self._running = False           # enabled, ready, not fatal, not shut down
        self._fatal = False
        self._page_size = 4096
        self._pmask = 4095
        self._intmask = 0               # controller reset unmasks every vector
        self._aers: list[int] = []      # CIDs of outstanding Asynchronous Event Requests
        self._events: list[int] = []    # undelivered async event DW0 values
        self._features = dict(_FEATURE_DEFAULTS)
        self._nq_alloc = (self.max_queues, self.max_queues)
        self._nq_set = False
        self._dbmv[:] = bytes(len(self._dbmv))
        self._dbsnap = bytes(len(self._dbmv))
        self._db_rest[:] = bytes(len(self._db_rest))
        self._db_rest_snap = bytes(len(self._db_rest))
        self._irq_extra = False

    def _restore_read_only(self) -> None:
        """The host wrote CAP, VS or CSTS, which only the device writes: hardware ignores
        such writes, so the model puts its values back (and counts the error).  Without
        this a driver that scribbled CSTS left a stale RDY or CFS that no restarted
        driver could reset past (found by the nvme-regs fuzzer)."""
        self._error("host wrote a read-only register (CAP, VS or CSTS); ignored")
        self.bar.write64(R.CAP, self._cap)
        self.bar.write32(R.VS, R.NVME_VERSION)
        self._u32[R.CSTS >> 2] = self._csts

    def _set_csts(self, v: int) -> None:
        self._csts = v
        self._u32[R.CSTS >> 2] = v

    @property
    def ready(self) -> bool:
        return bool(self._csts & R.CSTS_RDY)

    @property
    def fatal(self) -> bool:
        return self._fatal

    @property
    def interrupt_mask(self) -> int:
        return self._intmask

    def _error(self, what: str) -> None:
        self.stats["errors"] += 1
        self.last_error = what
        u = self._u32
        u[R.EMU_ERRCNT >> 2] = (u[R.EMU_ERRCNT >> 2] + 1) & 0xFFFFFFFF

    def _go_fatal(self, why: str) -> None:
        self._error("fatal: " + why)
        self._fatal = True
        self._running = False
        self._set_csts(self._csts | R.CSTS_CFS)

    # ------------------------------------------------------------------ main entry
    def process(self) -> bool:
        """Do all pending work.  Returns True if an interrupt should be raised."""
        u = self._u32
        if u[R.CSTS >> 2] != self._csts or u[0] != self._ro[0] or u[1] != self._ro[1] or u[2] != self._ro[2]:
            self._restore_read_only()
        cc = u[R.CC >> 2]
        if cc != self._cc:
            self._on_cc(cc)
        if u[R.NSSR >> 2]:
            self._on_nssr(u[R.NSSR >> 2])
        if u[R.INTMS >> 2] or u[R.INTMC >> 2]:
            self._on_intm()
        if not u[R.EMU_PCICMD >> 2] & R.PCICMD_BME:
            if self._bme or u[R.EMU_QACK >> 2] != u[R.EMU_QREQ >> 2]:
                self._quiesce()
            return False
        if not self._bme:
            self._bme = True
            u[R.EMU_DEVSTAT >> 2] &= ~R.DEVSTAT_DMA_STOPPED
        if not self._running:
            return False
        raw = self._dbmv.tobytes()
        if raw != self._dbsnap:
            self._on_doorbells(raw)
        if self._db_rest.tobytes() != self._db_rest_snap:
            self._on_rest_doorbells()
        irq = self._irq_extra
        self._irq_extra = False
        for sq in self._active_sqs:
            if sq.head != sq.tail:
                if not u[R.EMU_PCICMD >> 2] & R.PCICMD_BME:   # BME cleared meanwhile
                    break
                if sq.qid and (sq.tail - sq.head) % sq.size >= self.vec_min:
                    if self._run_io_batch(sq):
                        irq = True
                elif self._run_sq(sq):
                    irq = True
                if not self._running:
                    break
        if irq:
            self.stats["interrupts"] += 1
            u[R.EMU_IRQCNT >> 2] = (u[R.EMU_IRQCNT >> 2] + 1) & 0xFFFFFFFF
        return irq

    def next_deadline(self) -> float | None:
        """Always None: all the controller's work arrives with register and doorbell
        writes, which the host follows with a ring of the device's doorbell (a full
        CQ resumes on the host's CQ head doorbell), so an idle controller needs no
        timer and its process may sleep until rung."""
        return None

    def _quiesce(self) -> None:
        u = self._u32
        self._bme = False
        u[R.EMU_DEVSTAT >> 2] |= R.DEVSTAT_DMA_STOPPED
        u[R.EMU_QACK >> 2] = u[R.EMU_QREQ >> 2]

    def _on_intm(self) -> None:
        u = self._u32
        s, c = u[R.INTMS >> 2], u[R.INTMC >> 2]
        if s:
            self._intmask |= s
            u[R.INTMS >> 2] = 0
        if c:
            self._intmask &= ~c
            u[R.INTMC >> 2] = 0

    def _on_nssr(self, v: int) -> None:
        self._u32[R.NSSR >> 2] = 0
        if v != R.NSSR_MAGIC:
            return
        self.stats["resets"] += 1
        self._clear_state()
        self._set_csts(R.CSTS_NSSRO)
        # a subsystem reset resets the registers: CC reads 0, the host must re-enable
        self._u32[R.CC >> 2] = 0
        self._cc = 0

    def _on_cc(self, cc: int) -> None:
        old, self._cc = self._cc, cc
        if old & R.CC_EN and not cc & R.CC_EN:
            self.stats["resets"] += 1
            self._clear_state()
            self._set_csts(self._csts & R.CSTS_NSSRO)
            return
        if cc & R.CC_EN and not old & R.CC_EN:
            self._enable(cc)
        shn = cc >> 14 & 3
        if shn and not (old >> 14 & 3) and self._csts & R.CSTS_RDY:
            self._shutdown()

    def _enable(self, cc: int) -> None:
        f = R.cc_decode(cc)
        u = self._u32
        if self._fatal:
            return
        if f.css != 0 or f.ams != 0:
            return self._go_fatal("CC.CSS/AMS not supported")
        if not self.mpsmin <= f.mps <= self.mpsmax:
            return self._go_fatal("CC.MPS outside CAP.MPSMIN..MPSMAX")
        ps = 1 << (12 + f.mps)
        asqs, acqs = R.aqa_decode(u[R.AQA >> 2])
        asq, acq = self.bar.read64(R.ASQ), self.bar.read64(R.ACQ)
        if not 1 <= asqs < self.mqes or not 1 <= acqs < self.mqes:
            return self._go_fatal("AQA sizes invalid")
        if asq & (ps - 1) or acq & (ps - 1):
            return self._go_fatal("ASQ/ACQ not page aligned")
        try:
            cqmem = self._window(acq, (acqs + 1) * S.CQE_SIZE)
            sqmem = self._window(asq, (asqs + 1) * S.SQE_SIZE)
        except DmaFault:
            return self._go_fatal("admin queue outside the DMA window")
        self._page_size, self._pmask = ps, ps - 1
        # doorbell writes made while disabled are lost, as on hardware
        self._dbmv[:] = bytes(len(self._dbmv))
        self._dbsnap = bytes(len(self._dbmv))
        self._db_rest[:] = bytes(len(self._db_rest))
        self._db_rest_snap = bytes(len(self._db_rest))
        sw = self._stride_words
        cq = _CQ(0, acq, acqs + 1, cqmem, True, 0, self._db_w0 + sw)
        sq = _SQ(0, asq, asqs + 1, sqmem, cq, self._db_w0)
        cq.nsq = 1
        self._cqs[0], self._sqs[0] = cq, sq
        self._active_sqs = [sq]
        self._running = True
        self._set_csts((self._csts & R.CSTS_NSSRO) | R.CSTS_RDY)

    def _shutdown(self) -> None:
        self._set_csts((self._csts & ~R.CSTS_SHST_MASK) | R.SHST_OCCURRING << 2)
        try:
            self.store.flush()
        except OSError as e:
            self._error(f"flush at shutdown failed: {e}")
        self._running = False
        self._set_csts((self._csts & ~R.CSTS_SHST_MASK) | R.SHST_COMPLETE << 2)

    # ------------------------------------------------------------------ doorbells
    def _on_doorbells(self, raw: bytes) -> None:
        old = self._dbsnap
        self._dbsnap = raw
        new_w = struct.unpack(f"<{self._db_words}I", raw)
        old_w = struct.unpack(f"<{self._db_words}I", old)
        sw = self._stride_words
        for i in range(self._db_words):
            v = new_w[i]
            if v == old_w[i]:
                continue
            if i % sw:
                self._bad_doorbell(S.AER_ERR_INVALID_DOORBELL_REGISTER, f"write between doorbells at word {i}")
                continue
            j = i // sw
            qid, is_cq = j >> 1, j & 1
            if is_cq:
                cq = self._cqs[qid]
                if cq is None:
                    self._bad_doorbell(S.AER_ERR_INVALID_DOORBELL_REGISTER, f"CQ{qid} head doorbell: no such queue")
                elif v >= cq.size or (v - cq.head) % cq.size > (cq.tail - cq.head) % cq.size:
                    self._bad_doorbell(S.AER_ERR_INVALID_DOORBELL_VALUE, f"CQ{qid} head doorbell value {v}")
                else:
                    cq.head = v
            else:
                sq = self._sqs[qid]
                if sq is None:
                    self._bad_doorbell(S.AER_ERR_INVALID_DOORBELL_REGISTER, f"SQ{qid} tail doorbell: no such queue")
                elif v >= sq.size or (v - sq.tail) % sq.size > sq.size - 1 - (sq.tail - sq.head) % sq.size:
                    self._bad_doorbell(S.AER_ERR_INVALID_DOORBELL_VALUE, f"SQ{qid} tail doorbell value {v}")
                else:
                    sq.tail = v
            if not self._running:
                return

    def _on_rest_doorbells(self) -> None:
        raw = self._db_rest.tobytes()
        new = np.frombuffer(raw, dtype="<u4")
        old = np.frombuffer(self._db_rest_snap, dtype="<u4")
        self._db_rest_snap = raw
        for i in np.flatnonzero(new != old)[:4].tolist():
            off = R.DOORBELL_BASE + 4 * (self._db_words + i)
            self._bad_doorbell(S.AER_ERR_INVALID_DOORBELL_REGISTER,
                               f"write to {off:#x}, beyond the last queue's doorbells")
            if not self._running:
                return

    def _bad_doorbell(self, info: int, what: str) -> None:
        self.stats["doorbell_errors"] += 1
        self._error("invalid doorbell write: " + what)
        if self._aers and self._post_event(S.aer_dw0(S.AER_TYPE_ERROR, info, S.LOG_ERROR_INFO)):
            return
        self._go_fatal("invalid doorbell write with no Asynchronous Event Request outstanding: " + what)

    def _post_event(self, dw0: int) -> bool:
        """Complete an outstanding AER with ``dw0``; False if it could not be delivered."""
        cq = self._cqs[0]
        if not self._aers or cq is None or (cq.tail + 1) % cq.size == cq.head:
            return False
        cid = self._aers.pop(0)
        self._post(cq, dw0, self._sqs[0].head, 0, cid, 0)
        if not self._intmask & 1:
            self._irq_extra = True
        return True

    # ------------------------------------------------------------------ DMA helpers
    def _window(self, addr: int, n: int) -> memoryview:
        if addr < self.dma_base or addr + n > self.dma_limit or n < 0:
            self.stats["dma_errors"] += 1
            raise DmaFault(S.ST_DATA_TRANSFER_ERROR,
                           f"DMA [{addr:#x}, {addr + n:#x}) outside window "
                           f"[{self.dma_base:#x}, {self.dma_limit:#x})")
        return self.dma[addr:addr + n]

    def _read_list(self, addr: int, count: int) -> list[int]:
        return list(struct.unpack_from(f"<{count}Q", self._window(addr, 8 * count)))

    def _views(self, prp1: int, prp2: int, length: int) -> list[memoryview]:
        if not prp1 & 3 and (prp1 & self._pmask) + length <= self._page_size:
            return [self._window(prp1, length)]
        segs = S.prp_segments(prp1, prp2, length, self._page_size, self._read_list)
        return [self._window(a, n) for a, n in segs]

    def _copy_out(self, prp1: int, prp2: int, data: bytes) -> None:
        """Device -> host transfer of ``data`` (used by admin commands)."""
        pos = 0
        for v in self._views(prp1, prp2, len(data)):
            v[:] = data[pos:pos + len(v)]
            pos += len(v)

    # ------------------------------------------------------------------ queues
    def _post(self, cq: _CQ, dw0: int, sqhd: int, sqid: int, cid: int, status: int) -> None:
        t = cq.tail
        S.CQE_HEAD.pack_into(cq.mem, t << 4, dw0, 0, sqhd, sqid)
        cq.u32[(t << 2) + 3] = cid | cq.phase << 16 | status << 17   # phase tag last
        t += 1
        if t == cq.size:
            t = 0
            cq.phase ^= 1
        cq.tail = t
        self.stats["completions"] += 1

    def _run_sq(self, sq: _SQ) -> bool:
        """Execute the entries of ``sq``; True if an interrupt-raising CQE was posted."""
        cq = sq.cq
        admin = sq.qid == 0
        posted = 0
        unpack = S.SQE.unpack_from
        mem = sq.mem
        size = sq.size
        while sq.head != sq.tail:
            if (cq.tail + 1) % cq.size == cq.head:
                break                                   # CQ full: stall this SQ
            f = unpack(mem, sq.head << 6)
            h = sq.head + 1
            sq.head = 0 if h == size else h
            self.stats["commands"] += 1
            try:
                if admin:
                    r = self._admin(f)
                    if r is None:                       # AER: completes later
                        continue
                    status, dw0 = r
                else:
                    status, dw0 = self._io(f), 0
            except DmaFault as e:
                status, dw0 = e.status, 0
                self._error(str(e))
            except Exception as e:                       # never let a bug kill the device
                status, dw0 = S.ST_INTERNAL_ERROR, 0
                self.stats["internal_errors"] += 1
                self._error(f"internal error executing opcode {f[0]:#x}: {e!r}")
            if self._fatal or self._cqs[cq.qid] is not cq:
                return bool(posted)
            self._post(cq, dw0, sq.head, sq.qid, f[2], status)
            posted += 1
        return bool(posted) and cq.ien and not (self._intmask >> (cq.iv & 31)) & 1

    def _run_io_batch(self, sq: _SQ) -> bool:
        """The commands queued in I/O queue `sq` (as many as its CQ has room for),
        when there are at least `vec_min` of them: `_run_sq` vectorised.

        Each command has one implementation, `_io`.  Here its checks for a Read or
        Write run on the whole batch at once; a command that passes them all (NSID 1,
        no flags or FUA, LBAs in range, within MDTS, one DMA segment inside the
        window: what `_io` would do with one view and no error) is moved by the
        store's batch copy, runs of same-opcode commands at a time, in queue order;
        every other command (other opcodes, PRP2/PRP lists, FUA, anything `_io`
        would refuse) goes through `_io` itself, in its place in the order, and so
        does a run the store failed (to find which command failed and how).  The
        completions are posted with vector stores: DW0-DW2 first, then DW3, whose
        phase tag publishes the entry (x86 keeps stores in order)."""
        cq = sq.cq
        size, head = sq.size, sq.head
        ct, cs, ph = cq.tail, cq.size, cq.phase
        todo = min((sq.tail - head) % size, (cq.head - ct - 1) % cs)   # SQ entries, CQ room
        if not todo:
            return False
        end = head + todo
        w = sq.w
        e = (w[head:end] if end <= size else np.concatenate((w[head:], w[:end - size]))).astype(np.int64)
        d0 = e[:, 0]
        kind, slba, prp1, length = self._simple_rw(e)
        store, dma, mem, shift = self.store, self.dma, sq.mem, self.lba_shift
        if type(kind) is int:                      # all simple, one opcode: one run
            runs = ((0, todo, kind),)
        else:
            cut = np.flatnonzero((kind[1:] != kind[:-1]) | (kind[1:] == 0)) + 1
            runs = zip([0] + cut.tolist(), cut.tolist() + [todo], kind[np.r_[0, cut]].tolist())
        status = None
        for lo, hi, k in runs:
            if k:
                move = store.read_many if k == S.NVM_READ else store.write_many
                try:
                    if type(length) is int:
                        move(dma, prp1[lo:hi].tolist(), (slba[lo:hi] << shift).tolist(), length)
                    else:                           # one length at a time
                        for a, off, n in zip(prp1[lo:hi].tolist(), (slba[lo:hi] << shift).tolist(),
                                             length[lo:hi].tolist()):
                            move(dma, (a,), (off,), n)
                    continue
                except OSError:
                    pass                            # redo one by one: which failed, how
            if status is None:
                status = np.zeros(todo, dtype=np.int64)
            for j in range(lo, hi):
                status[j] = self._io_safe(mem, ((head + j) % size) << 6)
        sqhd = np.arange(head + 1, end + 1)
        if end >= size:
            sqhd %= size
        dw2 = sqhd | (sq.qid << 16)
        dw3 = (d0 >> 16) | (ph << 16)
        if status is not None:
            dw3 |= status << 17
        dw = cq.dw
        cend = ct + todo
        if cend <= cs:
            dw[ct:cend, 0:2] = 0
            dw[ct:cend, 2] = dw2
            dw[ct:cend, 3] = dw3
        else:                                 # the CQ wraps: the phase flips there
            k = cs - ct
            dw3[k:] ^= 1 << 16
            dw[ct:, 0:2] = 0
            dw[:cend - cs, 0:2] = 0
            dw[ct:, 2] = dw2[:k]
            dw[:cend - cs, 2] = dw2[k:]
            dw[ct:, 3] = dw3[:k]
            dw[:cend - cs, 3] = dw3[k:]
        sq.head = end % size
        if cend >= cs:
            cend -= cs
            ph ^= 1
        cq.tail, cq.phase = cend, ph
        st = self.stats
        st["commands"] += todo
        st["completions"] += todo
        return cq.ien and not (self._intmask >> (cq.iv & 31)) & 1

    #: SQE dwords a homogeneous batch shares: DW0's opcode and flags (not the CID),
    #: NSID, PRP1's high half, CDW11 (the LBA's high half), CDW12 (blocks, FUA)
    _SAME_COLS = np.array([0, 1, 7, 11, 12])

    def _simple_rw(self, e: np.ndarray):
        """`_io`'s checks for Read and Write, on a batch (`e`: the SQEs' dwords as an
        (n, 16) int64 array).  A command is simple if `_io` would run it as a Read
        or Write with one DMA segment and no error: NSID 1, no flags, no FUA, LBAs
        in range, at most MDTS, PRP1 dword-aligned with the transfer inside its page
        (no PRP2) and inside the DMA window.  Returns (kind, slba, prp1, length):
        kind the opcode of each command where simple and 0 where not -- or one int
        when every command is simple with that opcode; length an int when all are
        equal.  A homogeneous batch (every command sharing the first one's opcode,
        flags, NSID, CDW11, CDW12, PRP1 high half) is checked with whole-batch
        reductions, the rest per command; both are the same checks."""
        first = e[0]
        same = e[:, self._SAME_COLS]
        same[:, 0] &= 0xFFFF                        # DW0 without the CID
        if not count_nonzero(same != same[0]):
            opc, flags, nsid, phi, c11, c12 = (int(first[0]) & 0xFF, int(first[0]) >> 8 & 0xFF, int(first[1]),
                                               int(first[7]), int(first[11]), int(first[12]))
            nlb = (c12 & 0xFFFF) + 1
            length = nlb << self.lba_shift
            if ((opc == S.NVM_READ or opc == S.NVM_WRITE) and not flags and nsid == 1 and not c12 & S.RW_FUA
                    and c11 <= self.nsze >> 32 and phi < 1 << 31 and length <= self.max_transfer):
                slba = e[:, 10] + (c11 << 32) if c11 else e[:, 10]
                prp1 = e[:, 6] + (phi << 32) if phi else e[:, 6]
                lo, hi = int(prp1.min()), int(prp1.max())
                low = int(np.bitwise_or.reduce(prp1)) & self._pmask   # 0: every buffer page-aligned
                if (int(slba.max()) + nlb <= self.nsze and lo >= self.dma_base and hi + length <= self.dma_limit
                        and not low & 3
                        and (low == 0 and length <= self._page_size
                             or int((prp1 & self._pmask).max()) + length <= self._page_size)):
                    return opc, slba, prp1, length
        d0, c12 = e[:, 0], e[:, 12]
        opc = d0 & 0xFF
        nlb = (c12 & 0xFFFF) + 1
        length = nlb << self.lba_shift
        # the 64-bit fields are built only where they cannot overflow int64; where
        # they could, the command is not simple anyway (LBA or address out of range)
        small = (e[:, 11] <= self.nsze >> 32) & (e[:, 7] < 1 << 31)
        slba = e[:, 10] | (e[:, 11] << 32)
        prp1 = e[:, 6] | (e[:, 7] << 32)
        simple = (((opc == S.NVM_READ) | (opc == S.NVM_WRITE)) & ((d0 >> 8 & 0xFF) == 0) & (e[:, 1] == 1)
                  & ((c12 & S.RW_FUA) == 0) & small & (slba + nlb <= self.nsze) & (length <= self.max_transfer)
                  & ((prp1 & 3) == 0) & ((prp1 & self._pmask) + length <= self._page_size)
                  & (prp1 >= self.dma_base) & (prp1 + length <= self.dma_limit))
        return np.where(simple, opc, 0), slba, prp1, length

    def _io_safe(self, mem, off: int) -> int:
        try:
            return self._io(S.SQE.unpack_from(mem, off))
        except DmaFault as e:
            self._error(str(e))
            return e.status
        except Exception as e:                           # never let a bug kill the device
            self.stats["internal_errors"] += 1
            self._error(f"internal error in I/O command: {e!r}")
            return S.ST_INTERNAL_ERROR

    # ------------------------------------------------------------------ NVM commands
    def _io(self, f) -> int:
        opc, flags, cid, nsid, _c23, _mptr, prp1, prp2, c10, c11, c12 = f[:11]
        if opc == S.NVM_READ or opc == S.NVM_WRITE:
            if nsid != 1:
                return S.ST_INVALID_NAMESPACE
            if flags:
                return S.ST_INVALID_FIELD               # fused ops / SGLs unsupported
            nlb = (c12 & 0xFFFF) + 1
            slba = c10 | c11 << 32
            if slba + nlb > self.nsze:
                return S.ST_LBA_OUT_OF_RANGE
            length = nlb << self.lba_shift
            if length > self.max_transfer:
                return S.ST_INVALID_FIELD
            views = self._views(prp1, prp2, length)
            if opc == S.NVM_READ:
                try:
                    self.store.readinto(slba << self.lba_shift, views)
                except OSError as e:
                    self._error(f"read error: {e}")
                    return S.ST_UNRECOVERED_READ
            else:
                try:
                    self.store.writefrom(slba << self.lba_shift, views)
                    if c12 & S.RW_FUA:
                        self.store.flush()
                except OSError as e:
                    self._error(f"write error: {e}")
                    return S.ST_WRITE_FAULT
            return 0
        if opc == S.NVM_FLUSH:
            if nsid != 1 and nsid != S.NSID_ALL:
                return S.ST_INVALID_NAMESPACE
            try:
                self.store.flush()
            except OSError as e:
                self._error(f"flush error: {e}")
                return S.ST_WRITE_FAULT
            return 0
        if opc == S.NVM_WRITE_ZEROES:
            if nsid != 1:
                return S.ST_INVALID_NAMESPACE
            nlb = (c12 & 0xFFFF) + 1
            slba = c10 | c11 << 32
            if slba + nlb > self.nsze:
                return S.ST_LBA_OUT_OF_RANGE
            try:
                self.store.write_zeroes(slba << self.lba_shift, nlb << self.lba_shift)
            except OSError as e:
                self._error(f"write error: {e}")
                return S.ST_WRITE_FAULT
            return 0
        return S.ST_INVALID_OPCODE

    # ------------------------------------------------------------------ admin commands
    def _admin(self, f):
        opc = f[0]
        if f[1]:
            return S.ST_INVALID_FIELD, 0
        h = self._ADMIN.get(opc)
        if h is None:
            return S.ST_INVALID_OPCODE, 0
        return h(self, S.Command(f[0], f[2], f[3], f[6], f[7], f[8], f[9], f[10], f[11],
                                 f[12], f[13], f[1], f[5], f[4]))

    def _qid_ok(self, qid: int, is_sq: bool) -> bool:
        limit = self._nq_alloc[0 if is_sq else 1]
        return 1 <= qid <= min(limit, self.max_queues)

    def _create_cq(self, c: S.Command):
        qid, qsize = c.cdw10 & 0xFFFF, (c.cdw10 >> 16) + 1
        pc, ien, iv = c.cdw11 & 1, c.cdw11 >> 1 & 1, c.cdw11 >> 16
        if not self._qid_ok(qid, False) or self._cqs[qid] is not None:
            return S.ST_INVALID_QID, 0
        if qsize < 2 or qsize > self.mqes:
            return S.ST_INVALID_QSIZE, 0
        if not pc:
            return S.ST_INVALID_FIELD, 0
        if iv > self.max_queues:
            return S.ST_INVALID_IRQ_VECTOR, 0
        if self._cc >> 20 & 0xF != S.CQE_SHIFT:
            return S.ST_INVALID_FIELD, 0
        if c.prp1 & self._pmask:
            return S.ST_PRP_OFFSET_INVALID, 0
        mem = self._window(c.prp1, qsize * S.CQE_SIZE)
        sw = self._stride_words
        cq = _CQ(qid, c.prp1, qsize, mem, bool(ien), iv, self._db_w0 + (2 * qid + 1) * sw)
        self._cqs[qid] = cq
        self._reset_doorbell(cq.dbi)
        return 0, 0

    def _create_sq(self, c: S.Command):
        qid, qsize = c.cdw10 & 0xFFFF, (c.cdw10 >> 16) + 1
        pc, cqid = c.cdw11 & 1, c.cdw11 >> 16
        if not self._qid_ok(qid, True) or self._sqs[qid] is not None:
            return S.ST_INVALID_QID, 0
        if qsize < 2 or qsize > self.mqes:
            return S.ST_INVALID_QSIZE, 0
        if not pc:
            return S.ST_INVALID_FIELD, 0
        if cqid == 0 or cqid > self.max_queues or self._cqs[cqid] is None:
            return S.ST_CQ_INVALID, 0
        if self._cc >> 16 & 0xF != S.SQE_SHIFT:
            return S.ST_INVALID_FIELD, 0
        if c.prp1 & self._pmask:
            return S.ST_PRP_OFFSET_INVALID, 0
        mem = self._window(c.prp1, qsize * S.SQE_SIZE)
        cq = self._cqs[cqid]
        sq = _SQ(qid, c.prp1, qsize, mem, cq, self._db_w0 + 2 * qid * self._stride_words)
        cq.nsq += 1
        self._sqs[qid] = sq
        self._active_sqs = self._active_sqs + [sq]    # replaced, never mutated (iteration)
        self._reset_doorbell(sq.dbi)
        return 0, 0

    def _reset_doorbell(self, word: int) -> None:
        self._u32[word] = 0
        i = (word - self._db_w0) * 4
        snap = bytearray(self._dbsnap)
        snap[i:i + 4] = b"\0\0\0\0"
        self._dbsnap = bytes(snap)

    def _delete_sq(self, c: S.Command):
        qid = c.cdw10 & 0xFFFF
        if qid == 0 or qid > self.max_queues or self._sqs[qid] is None:
            return S.ST_INVALID_QID, 0
        sq = self._sqs[qid]
        # commands still in the queue are aborted
        while sq.head != sq.tail and (sq.cq.tail + 1) % sq.cq.size != sq.cq.head:
            cid = S.SQE.unpack_from(sq.mem, sq.head << 6)[2]
            sq.head = (sq.head + 1) % sq.size
            self._post(sq.cq, 0, sq.head, qid, cid, S.ST_ABORTED_SQ_DELETION)
        sq.cq.nsq -= 1
        sq.tail = sq.head
        self._sqs[qid] = None
        self._active_sqs = [q for q in self._active_sqs if q is not sq]
        self._reset_doorbell(sq.dbi)
        return 0, 0

    def _delete_cq(self, c: S.Command):
        qid = c.cdw10 & 0xFFFF
        if qid == 0 or qid > self.max_queues or self._cqs[qid] is None:
            return S.ST_INVALID_QID, 0
        cq = self._cqs[qid]
        if cq.nsq:
            return S.ST_INVALID_QUEUE_DELETION, 0
        self._cqs[qid] = None
        self._reset_doorbell(cq.dbi)
        return 0, 0

    def _identify(self, c: S.Command):
        cns = c.cdw10 & 0xFF
        if cns == S.CNS_CONTROLLER:
            data = self.identify_ctrl.encode()
        elif cns == S.CNS_NAMESPACE:
            if c.nsid != 1:
                return S.ST_INVALID_NAMESPACE, 0
            data = self.identify_ns.encode()
        elif cns == S.CNS_ACTIVE_NS_LIST:
            if c.nsid >= 0xFFFFFFFE:
                return S.ST_INVALID_NAMESPACE, 0
            data = bytearray(S.IDENTIFY_SIZE)
            if c.nsid < 1:
                data[0:4] = (1).to_bytes(4, "little")
            data = bytes(data)
        else:
            return S.ST_INVALID_FIELD, 0
        self._copy_out(c.prp1, c.prp2, data)
        return 0, 0

    def _set_features(self, c: S.Command):
        fid, sv = c.cdw10 & 0xFF, c.cdw10 >> 31
        if sv:
            return S.ST_FEATURE_NOT_SAVEABLE, 0
        if fid == S.FEAT_NUM_QUEUES:
            nsqr, ncqr = c.cdw11 & 0xFFFF, c.cdw11 >> 16
            if nsqr == 0xFFFF or ncqr == 0xFFFF:
                return S.ST_INVALID_FIELD, 0
            if any(q is not None for q in self._sqs[1:]) or any(q is not None for q in self._cqs[1:]):
                return S.ST_COMMAND_SEQUENCE_ERROR, 0
            ns, nc = min(nsqr + 1, self.max_queues), min(ncqr + 1, self.max_queues)
            self._nq_alloc = (ns, nc)
            self._nq_set = True
            return 0, (ns - 1) | (nc - 1) << 16
        if fid in self._features:
            self._features[fid] = c.cdw11
            return 0, 0
        return S.ST_INVALID_FIELD, 0

    def _get_features(self, c: S.Command):
        fid, sel = c.cdw10 & 0xFF, c.cdw10 >> 8 & 7
        if sel > 3:
            return S.ST_INVALID_FIELD, 0
        if fid == S.FEAT_NUM_QUEUES:
            if sel == 3:
                return 0, 0b100
            ns, nc = self._nq_alloc if sel == 0 else (self.max_queues, self.max_queues)
            return 0, (ns - 1) | (nc - 1) << 16
        if fid in self._features:
            if sel == 3:
                return 0, 0b100                      # changeable, not saveable
            return 0, self._features[fid] if sel == 0 else _FEATURE_DEFAULTS[fid]
        return S.ST_INVALID_FIELD, 0

    def _get_log_page(self, c: S.Command):
        lid = c.cdw10 & 0xFF
        numd = ((c.cdw10 >> 16) | (c.cdw11 & 0xFFFF) << 16) + 1
        if lid not in (S.LOG_ERROR_INFO, S.LOG_SMART, S.LOG_FW_SLOT):
            return S.ST_INVALID_LOG_PAGE, 0
        n = numd * 4
        if n > self.max_transfer:
            return S.ST_INVALID_FIELD, 0
        self._copy_out(c.prp1, c.prp2, bytes(n))
        return 0, 0

    def _abort(self, c: S.Command):
        return 0, 1                                    # DW0 bit 0: command not aborted

    def _async_event(self, c: S.Command):
        if len(self._aers) > self.identify_ctrl.aerl:
            return S.ST_AER_LIMIT, 0
        self._aers.append(c.cid)
        return None

    _ADMIN = {
        S.ADMIN_CREATE_CQ: _create_cq, S.ADMIN_CREATE_SQ: _create_sq,
        S.ADMIN_DELETE_SQ: _delete_sq, S.ADMIN_DELETE_CQ: _delete_cq,
        S.ADMIN_IDENTIFY: _identify, S.ADMIN_SET_FEATURES: _set_features,
        S.ADMIN_GET_FEATURES: _get_features, S.ADMIN_GET_LOG_PAGE: _get_log_page,
        S.ADMIN_ABORT: _abort, S.ADMIN_ASYNC_EVENT: _async_event,
    }
