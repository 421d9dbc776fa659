"""NVMe driver logic as a pure class (no processes, no sleeping).

It drives a controller through the shared BAR0 buffer and through queue/buffer
memory obtained from ``dma_alloc(nbytes, align) -> (dma_offset, memoryview)``,
supplied by the host shell (the driver domain allocates from the exchange heap; tests
use a bump allocator over the buffer the controller sees).

Waiting is delegated: every method that must wait for the device takes a ``step``
callable and calls it between polls.  A test wires ``step`` to
``controller.process``; a driver process wires it to "sleep/yield until the device
signals or a short timeout passes".  Timeouts are measured with ``clock``.

I/O path (one I/O queue pair, qid 1)::

    drv.submit_read(lba, nblocks, buf, tag)     # buf: DMA offset (contiguous buffer)
    drv.submit_write(lba, nblocks, buf, tag)    #      or a sequence of PRP entries
    drv.submit_flush(tag)
    drv.ring()                                  # one SQ tail doorbell write per batch
    ... device runs ...
    for tag, status in drv.reap(): ...          # status 0 = success (see spec.status_str)

At most ``queue_depth`` (= I/O queue size - 1) commands are in flight; submitting
more raises :class:`QueueFull` (check ``space()`` first).  ``inflight()`` lists the
requests submitted and not yet reaped, oldest first, so a shadow can re-issue them
on a fresh driver with ``resubmit()``.
"""
from __future__ import annotations

import struct
import time
from typing import Callable, NamedTuple

import numpy as np

from redleaf.shared_heap.batch import count_nonzero, has_duplicates

from . import regs as R
from . import spec as S

DmaAlloc = Callable[[int, int], "tuple[int, memoryview]"]
Step = Callable[[], object]


_SQE_PACK = S.SQE.pack_into
#: opc, flags, cid, nsid, (CDW2-5 zero), prp1, prp2, cdw10, cdw11, cdw12, (CDW13-15 zero)
_RW_PACK = struct.Struct("<BBHI16xQQIII12x").pack_into
assert struct.calcsize("<BBHI16xQQIII12x") == S.SQE_SIZE
_NO_OFFS = np.empty(0, dtype=np.int64)



class NvmeError(Exception):
    pass


class NvmeTimeout(NvmeError):
    pass


class ControllerFatal(NvmeError):
    """CSTS.CFS is set: the controller must be reset (re-run ``initialize``)."""


class CommandFailed(NvmeError):
    def __init__(self, what: str, status: int) -> None:
        super().__init__(f"{what}: {S.status_str(status)}")
        self.status = status


class QueueFull(NvmeError):
    pass


class Request(NamedTuple):
    tag: object
    opc: int
    lba: int
    nblocks: int
    buf: object          # DMA offset (int) or tuple of PRP entries; 0 for flush


class NvmeDriverCore:
    def __init__(self, bar, dma_alloc: DmaAlloc, *, io_queue_size: int = 256,
                 admin_queue_size: int = 32, nsid: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 admin_timeout: float = 5.0) -> None:
        self.bar = R.Bar(bar)
        self._u32 = self.bar.u32
        self.dma_alloc = dma_alloc
        self.want_io_queue_size = io_queue_size
        self.admin_queue_size = admin_queue_size
        self.nsid = nsid
        self.clock = clock
        self.admin_timeout = admin_timeout
        self.ready = False
        self.identify_controller: S.IdentifyController | None = None
        self.identify_namespace: S.IdentifyNamespace | None = None
        self._reqs: dict[int, tuple] = {}  # cid -> (tag, opc, lba, nblocks, buf)
        self._batch_off = _NO_OFFS
        self._free: list[int] = []
        self.unexpected: list[S.Completion] = []      # admin CQEs nobody waited for
        self.spurious = 0                               # I/O CQEs with an unknown CID

    # ------------------------------------------------------------------ helpers
    def _wait(self, cond: Callable[[], bool], what: str, step: Step, timeout: float) -> None:
        deadline = None
        while not cond():
            if deadline is None:
                deadline = self.clock() + timeout
            elif self.clock() > deadline:
                raise NvmeTimeout(f"timed out waiting for {what}")
            step()

    def _alloc(self, nbytes: int, align: int) -> tuple[int, memoryview]:
        off, mv = self.dma_alloc(nbytes, align)
        mv = memoryview(mv).cast("B")
        if off % align or len(mv) < nbytes:
            raise NvmeError("dma_alloc returned misaligned or short memory")
        mv = mv[:nbytes]
        mv[:] = bytes(nbytes)
        return off, mv

    def csts(self) -> R.CstsFields:
        return self.bar.csts()

    def fatal(self) -> bool:
        return bool(self._u32[R.CSTS >> 2] & R.CSTS_CFS)

    # ------------------------------------------------------------------ init
    def reset(self, step: Step, timeout: float | None = None) -> None:
        """CC.EN = 0, then wait for CSTS.RDY = 0 and CSTS.CFS = 0."""
        cap = self.bar.cap()
        t = timeout if timeout is not None else max(cap.timeout_s, 0.5)
        self.ready = False
        self._u32[R.CC >> 2] = 0
        u = self._u32
        self._wait(lambda: not u[R.CSTS >> 2] & (R.CSTS_RDY | R.CSTS_CFS),
                   "CSTS.RDY=0 after reset", step, t)

    def initialize(self, step: Step, timeout: float | None = None) -> None:
        """Full init sequence; raises NvmeError/NvmeTimeout/CommandFailed on failure.

        Order: reset (EN=0, wait RDY=0) *then* set Bus Master Enable - a device left
        configured by a dead driver must not DMA through its stale queues into memory
        that was reclaimed - then admin queue, enable, Identify, Set Features (number
        of queues), Create I/O CQ, Create I/O SQ.
        """
        cap = self.bar.cap()
        self.cap = cap
        if not cap.css & 1:
            raise NvmeError("controller does not support the NVM command set")
        t_ready = timeout if timeout is not None else max(cap.timeout_s, 0.5)
        self.reset(step, t_ready)
        self.bar.set_bme(True)
        self.dstrd = cap.dstrd
        # memory page size: 4 KiB if allowed, else the controller minimum
        mps = max(cap.mpsmin, 0)
        if mps > cap.mpsmax:
            raise NvmeError("no usable memory page size")
        self.page_shift = 12 + mps
        self.page_size = ps = 1 << self.page_shift
        self._pmask = ps - 1
        # admin queue
        aqs = max(2, min(self.admin_queue_size, cap.mqes + 1, 4096))
        self._asq_off, self._asq = self._alloc(aqs * S.SQE_SIZE, ps)
        self._acq_off, self._acq = self._alloc(aqs * S.CQE_SIZE, ps)
        self._acq32 = self._acq.cast("I")
        self._aq_size = aqs
        self._asq_tail = 0
        self._acq_head = 0
        self._acq_phase = 1
        self._admin_cid = 0
        self._asq_db = R.sq_tail_doorbell(0, self.dstrd) >> 2
        self._acq_db = R.cq_head_doorbell(0, self.dstrd) >> 2
        u = self._u32
        u[R.AQA >> 2] = R.aqa_encode(aqs - 1, aqs - 1)
        self.bar.write64(R.ASQ, self._asq_off)
        self.bar.write64(R.ACQ, self._acq_off)
        u[R.CC >> 2] = R.cc_encode(en=1, css=0, mps=mps, ams=0, shn=0,
                                   iosqes=S.SQE_SHIFT, iocqes=S.CQE_SHIFT)

        def ready():
            v = u[R.CSTS >> 2]
            if v & R.CSTS_CFS:
                raise ControllerFatal("controller fatal status while enabling")
            return bool(v & R.CSTS_RDY)
        self._wait(ready, "CSTS.RDY=1 after enable", step, t_ready)

        # identify
        self._id_off, self._id_buf = self._alloc(S.IDENTIFY_SIZE, ps)
        self.admin_checked(step, "Identify controller", S.ADMIN_IDENTIFY, prp1=self._id_off,
                           cdw10=S.CNS_CONTROLLER)
        self.identify_controller = S.IdentifyController.decode(self._id_buf)
        self.admin_checked(step, "Identify namespace", S.ADMIN_IDENTIFY, nsid=self.nsid,
                           prp1=self._id_off, cdw10=S.CNS_NAMESPACE)
        self.identify_namespace = ns = S.IdentifyNamespace.decode(self._id_buf)
        self.lba_shift = ns.lba_shift
        self.lba_size = ns.lba_size
        self.nblocks = ns.nsze
        mt = self.identify_controller.max_transfer(1 << (12 + cap.mpsmin))
        # one PRP list page per command (no chaining on the host side)
        limit = ps * (ps // 8)
        self.max_transfer = min(mt, limit) if mt else limit
        self.max_blocks = min(self.max_transfer >> self.lba_shift, 0x10000)

        # queues
        dw0 = self.admin_checked(step, "Set Features (number of queues)", S.ADMIN_SET_FEATURES,
                                 cdw10=S.FEAT_NUM_QUEUES, cdw11=0)
        if dw0 & 0xFFFF == 0xFFFF:
            raise NvmeError("controller allocated no I/O queues")
        qs = max(2, min(self.want_io_queue_size, cap.mqes + 1))
        self.io_queue_size = qs
        self._sq_off, self._sq = self._alloc(qs * S.SQE_SIZE, ps)
        self._cq_off, self._cq = self._alloc(qs * S.CQE_SIZE, ps)
        self._cq32 = self._cq.cast("I")
        self.admin_checked(step, "Create I/O CQ", S.ADMIN_CREATE_CQ, prp1=self._cq_off,
                           cdw10=1 | (qs - 1) << 16, cdw11=0b11)          # PC, IEN, IV 0
        self.admin_checked(step, "Create I/O SQ", S.ADMIN_CREATE_SQ, prp1=self._sq_off,
                           cdw10=1 | (qs - 1) << 16, cdw11=1 | 1 << 16)   # PC, CQID 1
        self._sq_tail = 0
        self._sq_rung = 0
        self._sq_head = 0
        self._cq_head = 0
        self._cq_phase = 1
        self._sq_db = R.sq_tail_doorbell(1, self.dstrd) >> 2
        self._cq_db = R.cq_head_doorbell(1, self.dstrd) >> 2
        self.queue_depth = qs - 1
        self._free = list(range(qs - 2, -1, -1))     # CIDs; pop() hands out 0 first
        self._reqs = {}
        # the batch path (submit_batch / reap_arrays): whole batches as numpy ops
        self._sq_w64 = np.frombuffer(self._sq, dtype=np.uint64, count=qs * 8).reshape(qs, 8)
        self._cq_dw = np.frombuffer(self._cq, dtype=np.uint32, count=qs * 4).reshape(qs, 4)
        self._batch_off = np.full(qs, -1, dtype=np.int64)  # cid -> buffer offset, -1 = not batch
        self._prp_lists: list[tuple[int, memoryview] | None] = [None] * qs
        self.ready = True

    def shutdown(self, step: Step, timeout: float | None = None) -> None:
        """Normal shutdown notification; returns when CSTS.SHST = complete."""
        u = self._u32
        u[R.CC >> 2] = (u[R.CC >> 2] & ~(3 << 14)) | R.CC_SHN_NORMAL << 14
        t = timeout if timeout is not None else max(self.bar.cap().timeout_s, 0.5)
        self._wait(lambda: (u[R.CSTS >> 2] & R.CSTS_SHST_MASK) >> 2 == R.SHST_COMPLETE,
                   "shutdown complete", step, t)
        self.ready = False

    # ------------------------------------------------------------------ admin
    def admin(self, step: Step, opc: int, *, nsid: int = 0, prp1: int = 0, prp2: int = 0,
              cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0,
              cdw14: int = 0, cdw15: int = 0, timeout: float | None = None) -> tuple[int, int]:
        """Run one admin command synchronously; returns (status, DW0)."""
        cid = self._admin_cid
        self._admin_cid = (cid + 1) & 0xFFFF
        t = self._asq_tail
        S.SQE.pack_into(self._asq, t << 6, opc, 0, cid, nsid, 0, 0, prp1, prp2,
                        cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)
        t += 1
        self._asq_tail = 0 if t == self._aq_size else t
        self._u32[self._asq_db] = self._asq_tail
        result: list = []
        u = self._u32

        def done():
            if u[R.CSTS >> 2] & R.CSTS_CFS:
                raise ControllerFatal(f"controller fatal status during admin opcode {opc:#x}")
            for c in self._reap_admin():
                if c.cid == cid and not result:
                    result.append(c)
                else:
                    self.unexpected.append(c)
            return bool(result)
        self._wait(done, f"admin opcode {opc:#x}", step,
                   timeout if timeout is not None else self.admin_timeout)
        return result[0].status, result[0].dw0

    def admin_checked(self, step: Step, what: str, opc: int, **kw) -> int:
        status, dw0 = self.admin(step, opc, **kw)
        if status:
            raise CommandFailed(what, status)
        return dw0

    def _reap_admin(self) -> list[S.Completion]:
        out = []
        u = self._acq32
        h, p = self._acq_head, self._acq_phase
        while True:
            dw3 = u[(h << 2) + 3]
            if (dw3 >> 16) & 1 != p:
                break
            out.append(S.decode_cqe(self._acq, h << 4))
            h += 1
            if h == self._aq_size:
                h, p = 0, p ^ 1
        if out:
            self._acq_head, self._acq_phase = h, p
            self._u32[self._acq_db] = h
        return out

    # ------------------------------------------------------------------ I/O submission
    def space(self) -> int:
        """How many more commands can be submitted right now."""
        return len(self._free)

    def outstanding(self) -> int:
        return len(self._reqs) + int((self._batch_off >= 0).sum())

    def _prp(self, cid: int, buf, length: int) -> tuple[int, int]:
        pmask = self._pmask
        if type(buf) is int:
            off = buf & pmask
            if off + length <= self.page_size:
                return buf, 0
            if off + length <= 2 * self.page_size:
                return buf, buf - off + self.page_size
            prp1, pages = S.prp_build(buf, length, self.page_size)
        else:
            if not buf:
                raise ValueError("empty PRP entry list")
            prp1, pages = buf[0], list(buf[1:])
            need = (length - (self.page_size - (prp1 & pmask)) + pmask) // self.page_size
            if len(pages) < max(need, 0):
                raise ValueError(f"{len(pages)} PRP entries after PRP1, need {need}")
            pages = pages[:max(need, 0)]
            if not pages:
                return prp1, 0
            if len(pages) == 1:
                return prp1, pages[0]
        if len(pages) > self.page_size // 8:
            raise ValueError("transfer needs a chained PRP list (larger than max_transfer)")
        lst = self._prp_lists[cid]
        if lst is None:
            lst = self._prp_lists[cid] = self._alloc(self.page_size, self.page_size)
        lst_off, lst_mv = lst
        struct.pack_into(f"<{len(pages)}Q", lst_mv, 0, *pages)
        return prp1, lst_off

    def _submit(self, opc: int, lba: int, nblocks: int, buf, tag) -> None:
        free = self._free
        if not self.ready:
            raise NvmeError("driver not initialised (call initialize())")
        if not free:
            raise QueueFull(f"I/O queue full ({self.queue_depth} commands in flight)")
        if opc != S.NVM_FLUSH:
            if not 1 <= nblocks <= self.max_blocks:
                raise ValueError(f"nblocks must be in 1..{self.max_blocks}")
            if lba < 0 or lba >= 1 << 64:
                raise ValueError("lba out of the 64-bit range")
            cid = free[-1]
            prp1, prp2 = self._prp(cid, buf, nblocks << self.lba_shift)
            free.pop()
            c10, c11, c12 = lba & 0xFFFFFFFF, lba >> 32, nblocks - 1
        else:
            cid = free.pop()
            prp1 = prp2 = c10 = c11 = c12 = 0
        t = self._sq_tail
        S.SQE.pack_into(self._sq, t << 6, opc, 0, cid, self.nsid, 0, 0, prp1, prp2,
                        c10, c11, c12, 0, 0, 0)
        t += 1
        self._sq_tail = 0 if t == self.io_queue_size else t
        self._reqs[cid] = (tag, opc, lba, nblocks, buf)
        return cid

    def submit_read(self, lba: int, nblocks: int, buf, tag) -> None:
        """Queue a Read of ``nblocks`` blocks at ``lba`` into ``buf``.

        ``buf`` is the DMA offset of a contiguous buffer, or a sequence of PRP entries
        (first may carry an offset, the others page aligned) for a scattered one.
        """
        free = self._free
        if (free and type(buf) is int and 0 < nblocks and 0 <= lba <= 0xFFFFFFFFFFFFFFFF
                and (buf & self._pmask) + (nblocks << self.lba_shift) <= self.page_size):
            cid = free.pop()
            t = self._sq_tail
            _RW_PACK(self._sq, t << 6, 2, 0, cid, self.nsid, buf, 0,
                     lba & 0xFFFFFFFF, lba >> 32, nblocks - 1)
            t += 1
            self._sq_tail = 0 if t == self.io_queue_size else t
            self._reqs[cid] = (tag, 2, lba, nblocks, buf)
        else:
            self._submit(S.NVM_READ, lba, nblocks, buf, tag)

    def submit_write(self, lba: int, nblocks: int, buf, tag) -> None:
        """Queue a Write of ``nblocks`` blocks at ``lba`` from ``buf`` (see submit_read)."""
        free = self._free
        if (free and type(buf) is int and 0 < nblocks and 0 <= lba <= 0xFFFFFFFFFFFFFFFF
                and (buf & self._pmask) + (nblocks << self.lba_shift) <= self.page_size):
            cid = free.pop()
            t = self._sq_tail
            _RW_PACK(self._sq, t << 6, 1, 0, cid, self.nsid, buf, 0,
                     lba & 0xFFFFFFFF, lba >> 32, nblocks - 1)
            t += 1
            self._sq_tail = 0 if t == self.io_queue_size else t
            self._reqs[cid] = (tag, 1, lba, nblocks, buf)
        else:
            self._submit(S.NVM_WRITE, lba, nblocks, buf, tag)

    def submit_many(self, opc: int, reqs) -> int:
        """Queue several Reads (``opc`` = spec.NVM_READ) or Writes (spec.NVM_WRITE).

        ``reqs`` is an iterable of ``(lba, nblocks, buf, tag)``.  Same semantics as
        ``submit_read``/``submit_write`` for each, with less per-command overhead.
        Stops at the first one that does not fit and raises QueueFull; returns the
        number queued otherwise.
        """
        if opc != S.NVM_READ and opc != S.NVM_WRITE:
            raise ValueError("submit_many takes NVM_READ or NVM_WRITE")
        free, sq, nsid, reqs_d = self._free, self._sq, self.nsid, self._reqs
        pmask, psize, shift, qsize = self._pmask, self.page_size, self.lba_shift, self.io_queue_size
        pack = _RW_PACK
        t = self._sq_tail
        n = 0
        try:
            for lba, nblocks, buf, tag in reqs:
                if (free and type(buf) is int and 0 < nblocks and 0 <= lba <= 0xFFFFFFFFFFFFFFFF
                        and (buf & pmask) + (nblocks << shift) <= psize):
                    cid = free.pop()
                    pack(sq, t << 6, opc, 0, cid, nsid, buf, 0, lba & 0xFFFFFFFF, lba >> 32,
                         nblocks - 1)
                    t += 1
                    if t == qsize:
                        t = 0
                    reqs_d[cid] = (tag, opc, lba, nblocks, buf)
                else:
                    self._sq_tail = t
                    self._submit(opc, lba, nblocks, buf, tag)
                    t = self._sq_tail
                n += 1
        finally:
            self._sq_tail = t
        return n

    def submit_batch(self, opc: int, lbas: np.ndarray, bufs: np.ndarray) -> int:
        """Queue one-block Reads or Writes as a batch: lbas[i] into/from the buffer
        at DMA offset bufs[i].  Queues as many as there is room for (a prefix) and
        returns how many; `reap_arrays` hands them back by buffer offset.

        Why: the per-command Python of `submit_many` (a pack and a dict entry each)
        was a large share of the driver's time; here a batch is a few numpy
        operations and one store of the entries into the submission queue."""
        if opc != S.NVM_READ and opc != S.NVM_WRITE:
            raise ValueError("submit_batch takes NVM_READ or NVM_WRITE")
        if not self.ready:
            raise NvmeError("driver not initialised (call initialize())")
        k = min(len(self._free), len(bufs))
        if k <= 0:
            return 0
        lbas = np.asarray(lbas[:k], dtype=np.uint64)
        bufs = np.asarray(bufs[:k], dtype=np.int64)
        if not ((bufs & self._pmask) + (1 << self.lba_shift) <= self.page_size).all():
            # a buffer crossing a page needs PRP2/a list: the general path, one by one
            for lba, buf in zip(lbas.tolist(), bufs.tolist()):
                cid = self._submit(opc, lba, 1, buf, None)
                del self._reqs[cid]
                self._batch_off[cid] = buf
            return k
        free = self._free
        cids = np.array(free[-k:], dtype=np.int64)
        del free[-k:]
        # an SQE as eight u64 words: 0 = opc | flags << 8 | cid << 16 | nsid << 32,
        # 3 = PRP1, 5 = CDW10 | CDW11 << 32 (the LBA), 6 = CDW12 (0: one block)
        e = np.zeros((k, 8), dtype=np.uint64)
        e[:, 0] = (cids << 16) | (opc | self.nsid << 32)
        e[:, 3] = bufs
        e[:, 5] = lbas
        t = self._sq_tail
        qs = self.io_queue_size
        self._batch_off[cids] = bufs
        if t + k <= qs:
            self._sq_w64[t:t + k] = e
        else:
            self._sq_w64[np.arange(t, t + k) % qs] = e
        self._sq_tail = (t + k) % qs
        return k

    def reap_arrays(self) -> tuple[list[tuple[object, int]], np.ndarray, np.ndarray]:
        """Consume new completions: ([(tag, status)] of commands submitted one at a
        time, buffer offsets of completed `submit_batch` commands, their statuses)."""
        dw = self._cq_dw
        h, p = self._cq_head, self._cq_phase
        if (int(dw[h, 3]) >> 16) & 1 != p:
            return [], _NO_OFFS, _NO_OFFS
        size = self.io_queue_size
        # entries h.. with phase p, then (after the wrap) 0.. with phase p ^ 1; a copy,
        # so what is used is what was checked
        seg = dw[h:, 3].copy()
        bad = np.flatnonzero(((seg >> 16) & 1) != p)
        if bad.size:
            d = seg[:bad[0]]
            nh, np_ = h + d.size, p
        else:
            seg2 = dw[:h, 3].copy()
            bad2 = np.flatnonzero(((seg2 >> 16) & 1) != (p ^ 1))
            d2 = seg2[:bad2[0]] if bad2.size else seg2
            d = np.concatenate([seg, d2])
            nh, np_ = d2.size, p ^ 1
            if nh == size:
                nh = 0
        last = (nh - 1) % size
        self._cq_head, self._cq_phase = nh, np_
        self._sq_head = int(dw[last, 2]) & 0xFFFF
        d = d.astype(np.int64)
        cids = d & 0xFFFF
        status = d >> 17
        boff = self._batch_off.take(cids, mode="clip")
        others: list = []
        if count_nonzero((boff < 0) | (cids >= size)) or has_duplicates(cids):
            # commands submitted one at a time (or a CID twice: a misbehaving device)
            reqs, free, bo = self._reqs, self._free, self._batch_off
            keep = np.zeros(cids.size, dtype=bool)
            for i, cid in enumerate(cids.tolist()):
                if cid < size and bo[cid] >= 0:
                    bo[cid] = -1
                    free.append(cid)
                    keep[i] = True
                    continue
                req = reqs.pop(cid, None)
                if req is None:
                    self.spurious += 1
                else:
                    free.append(cid)
                    others.append((req[0], int(status[i])))
            boff, status = boff[keep], status[keep]
        else:
            self._batch_off[cids] = -1
            self._free.extend(cids.tolist())
        self._u32[self._cq_db] = nh
        return others, boff, status

    def submit_flush(self, tag) -> None:
        self._submit(S.NVM_FLUSH, 0, 0, 0, tag)

    def resubmit(self, req: Request) -> None:
        """Re-issue a request taken from ``inflight()`` (of this or a dead driver)."""
        self._submit(req.opc, req.lba, req.nblocks, req.buf, req.tag)

    def submit_raw(self, tag, opc: int, *, nsid: int | None = None, prp1: int = 0,
                   prp2: int = 0, cdw10: int = 0, cdw11: int = 0, cdw12: int = 0,
                   cdw13: int = 0, cdw14: int = 0, cdw15: int = 0, flags: int = 0) -> int:
        """Submit an arbitrary I/O command (diagnostics and tests); returns its CID."""
        if not self.ready:
            raise NvmeError("driver not initialised (call initialize())")
        if not self._free:
            raise QueueFull("I/O queue full")
        cid = self._free.pop()
        t = self._sq_tail
        S.SQE.pack_into(self._sq, t << 6, opc, flags, cid,
                        self.nsid if nsid is None else nsid, 0, 0, prp1, prp2,
                        cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)
        self._sq_tail = (t + 1) % self.io_queue_size
        self._reqs[cid] = (tag, opc, cdw10 | cdw11 << 32, (cdw12 & 0xFFFF) + 1, prp1)
        return cid

    def ring(self) -> bool:
        """Publish submitted commands with one SQ tail doorbell write."""
        if self._sq_tail == self._sq_rung:
            return False
        self._sq_rung = self._sq_tail
        self._u32[self._sq_db] = self._sq_tail
        return True

    def reap(self) -> list[tuple[object, int]]:
        """Consume new completions (phase tag); returns [(tag, status)], status 0 = OK.
        Commands queued with `submit_batch` come back with their buffer offset as tag."""
        others, offs, status = self.reap_arrays()
        if offs.size:
            others += zip(offs.tolist(), status.tolist())
        return others

    def inflight(self) -> list[Request]:
        """Requests submitted (rung or not) and not yet reaped, oldest first."""
        return [Request(*r) for r in self._reqs.values()]

    def wait_all(self, step: Step, timeout: float = 5.0) -> list[tuple[object, int]]:
        """Ring, then reap until nothing is in flight (convenience for tests/tools)."""
        self.ring()
        out: list = []

        def done():
            if self.fatal():
                raise ControllerFatal("controller fatal status")
            out.extend(self.reap())
            return not self.outstanding()
        self._wait(done, "I/O completions", step, timeout)
        return out
