"""The emulated Intel 82599 as a pure (sans-I/O) state machine.

``Nic.process()`` does all pending device work and returns whether it did any;
a process shell calls it in a loop (see README at the end of this docstring).
The BAR and the DMA window are shared memory written by the driver; the device
reacts to what it finds there the way the hardware reacts to register writes:

* CTRL.RST / CTRL.LNK_RST: global reset -- registers to their defaults, queues
  stopped, statistics cleared, EEC.ARD and RDRXCTL.DMAIDONE set, RST self-clears.
  PCI config (the emulated PCI command word) is not touched by a reset.
* AUTOC.AN_RESTART: auto-negotiation; after ``link_delay`` process calls LINKS
  reports UP at 10 Gb/s.  AN_RESTART self-clears.
* EIMC: write-1-to-clear of EIMS, self-clears.
* RXDCTL/TXDCTL.ENABLE: the queue is checked (ring length non-zero and a
  multiple of 128, base 128-byte aligned, inside the DMA window, SRRCTL
  advanced one-buffer) and started; head taken from RDH/TDH.  A bad ring is a
  recorded device error and the ENABLE bit is cleared again (the driver's wait
  for ENABLE then fails, as with real hardware that refuses the queue).
* TX (DMATXCTL.TE): descriptors between TDH and TDT are fetched, frames (EOP
  delimited) go to the wire, DD is written back for RS descriptors, TDH
  advances, GPTC/GOTC count.
* RX (RXCTRL.RXEN, queue 0): frames are taken from the wire every call (a
  wire does not wait), DMAed into the buffers of descriptors between RDH and
  RDT, written back (length, then DD|EOP), RDH advances, GPRC/GORC count.
  Frames with no free descriptor are dropped and counted in MPC(0); oversize
  frames in ROC.  Octet counters include the 4-byte FCS, as on the 82599.
  Dropping is not work: a pass that only dropped frames returns False, so the
  process shell may sleep until the driver rings (a generator on the wire would
  otherwise keep the emulated NIC spinning on a full ring, taking the CPU the
  driver needs to empty it).  A wire with ``recv_array``/``send_array`` (pktgen)
  is served by one numpy scatter/gather per batch instead of one copy per frame;
  if it can also ``drop(n)`` (pktgen), the frames that find no descriptor are
  counted in MPC without being built, and a uniform TX batch (one frame kind and
  length, buffers in the window) is checked with a few whole-batch reductions
  (``_tx_fast``); anything else takes the general path, which reports it.
* Misprogramming (address outside [dma_base, dma_limit), bad descriptor, tail
  beyond the ring, ...) is a device error: counted in the BAR
  (EMU_ERR_COUNT/LAST/ARG/QUEUE), logged in ``Nic.errors``, and the offending
  queue is stopped (like 82599 malicious-driver detection).  No exception
  escapes ``process()`` for anything the driver can do.
* Bus Master Enable (PCI_CMD.BME) clear: no DMA at all (no descriptor fetch,
  no write-back, received frames dropped into MPC); the quiesce token is
  echoed into PCI_QUIESCE_ACK at the start of the call.

Process shell: ``busy = nic.process()``; when not busy, spin briefly, then
sleep on ``select([wire.fileno()], timeout=...)`` (or a short sleep when the
wire has no fd).  Doorbells (RDT/TDT) are plain stores into the BAR, so the
idle timeout bounds TX latency; a domain-level doorbell eventfd can cut it.
"""
from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np

from . import regs as R
from .descriptors import (DESC_SIZE, RING_ALIGN, RXD_STAT_DD, RXD_STAT_EOP, RingView,
                          TXD_DCMD_DEXT, TXD_DCMD_EOP, TXD_DCMD_RS, TXD_DTYP_DATA, TXD_DTYP_MASK,
                          byte_rows, leading_true, ring_indices, rx_encode_wb, tx_encode_wb)

FCS_LEN = 4
_TX_FAST_MASK = TXD_DCMD_DEXT | TXD_DTYP_MASK | TXD_DCMD_EOP | TXD_DCMD_RS
_TX_FAST_VAL = TXD_DCMD_DEXT | TXD_DTYP_DATA | TXD_DCMD_EOP | TXD_DCMD_RS
MIN_FRAME = 60             # without FCS; TXPADEN pads to this
MAX_FRAME_STD = 1514       # without FCS
MAX_FRAME_JUMBO = 9216


class DeviceError(NamedTuple):
    gen: int               # device process() generation when it happened
    code: R.DevErr
    queue: int
    arg: int
    message: str


class _Queue:
    __slots__ = ("ring", "n", "head", "base", "bufsize", "q")

    def __init__(self, ring: RingView, n: int, head: int, base: int, bufsize: int, q: int):
        self.ring, self.n, self.head, self.base, self.bufsize, self.q = ring, n, head, base, bufsize, q


class Nic:
    def __init__(self, bar: memoryview, dma: memoryview, dma_base: int, dma_limit: int, wire,
                 num_queues: int = 1, *, batch: int = 256, link_delay: int = 1,
                 max_error_log: int = 256):
        bar = memoryview(bar).cast("B")
        if len(bar) < R.BAR_SIZE:
            raise ValueError(f"BAR must be at least {R.BAR_SIZE:#x} bytes")
        dma = memoryview(dma).cast("B")
        if not 0 <= dma_base <= dma_limit <= len(dma):
            raise ValueError("bad DMA window")
        if not 1 <= num_queues <= 64:
            raise ValueError("num_queues must be 1..64")
        self.bar = bar
        self.dma = dma
        self.mem = np.frombuffer(dma, dtype=np.uint8)
        self.dma_base = dma_base
        self.dma_limit = dma_limit
        self.wire = wire
        self.num_queues = num_queues
        self.batch = batch
        self.link_delay = link_delay
        self._w = bar.cast("I")
        self._q64 = bar.cast("Q")
        self._real = np.frombuffer(bar, dtype=np.uint32, count=R.BAR_REAL_SIZE // 4)
        self.errors: collections.deque[DeviceError] = collections.deque(maxlen=max_error_log)
        self.error_count = self._w[R.EMU_ERR_COUNT >> 2]
        self.gen = self._w[R.EMU_GEN >> 2]
        self.resets = 0
        self.rxq: list[_Queue | None] = [None] * num_queues
        self.txq: list[_Queue | None] = [None] * num_queues
        self._link_countdown: int | None = None
        self._wire_drop = getattr(wire, "drop", None)
        self._wire_send_array = getattr(wire, "send_array", None)
        self._row_views: dict[int, np.ndarray] = {}
        # offsets used on the hot path
        self._rdt = [R.RDT(i) >> 2 for i in range(num_queues)]
        self._rdh = [R.RDH(i) >> 2 for i in range(num_queues)]
        self._tdt = [R.TDT(i) >> 2 for i in range(num_queues)]
        self._tdh = [R.TDH(i) >> 2 for i in range(num_queues)]
        self._rxdctl = [R.RXDCTL(i) >> 2 for i in range(num_queues)]
        self._txdctl = [R.TXDCTL(i) >> 2 for i in range(num_queues)]
        self._power_on()

    # ------------------------------------------------------------------ state
    def _power_on(self) -> None:
        """Power-on: like a reset, BME off (the driver must enable bus mastering)."""
        self._reset()
        w = self._w
        w[R.PCI_CMD >> 2] = R.PCI_CMD_MSE
        w[R.PCI_QUIESCE_ACK >> 2] = w[R.PCI_QUIESCE_REQ >> 2]

    def _reset(self) -> None:
        """Global reset.  CTRL (and with it RST) is cleared last: the driver takes RST
        self-clearing as "reset done" and starts programming registers, which the
        reset must not overwrite with defaults afterwards (a race seen under load)."""
        self.resets += 1
        ctrl = R.CTRL >> 2
        self._real[:ctrl] = 0
        self._real[ctrl + 1:] = 0
        w = self._w
        w[R.STATUS >> 2] = R.STATUS_GIO
        w[R.EEC >> 2] = R.EEC_PRES | R.EEC_ARD
        w[R.RDRXCTL >> 2] = R.RDRXCTL_DMAIDONE
        w[R.AUTOC >> 2] = 0x4 << R.AUTOC_LMS_SHIFT          # KX4/KX/KR, as shipped
        w[R.HLREG0 >> 2] = R.HLREG0_TXCRCEN | R.HLREG0_RXCRCSTRP | R.HLREG0_TXPADEN
        w[R.RXPBSIZE(0) >> 2] = 0x00080000                   # 512 KiB
        w[R.TXPBSIZE(0) >> 2] = 0x00028000                   # 160 KiB
        for i in range(self.num_queues):
            w[R.SRRCTL(i) >> 2] = (4 << 8) | 2               # legacy, 2 KiB buffers
        for slot in range(R.NUM_STATS):                      # statistics read as 0
            self._q64[R.stat_total_off(slot) >> 3] = self._q64[R.stat_base_off(slot) >> 3]
        self.rxq = [None] * self.num_queues
        self.txq = [None] * self.num_queues
        self._link_countdown = None
        w[ctrl] = 0                                          # RST self-clears: done

    def _error(self, code: R.DevErr, queue: int, arg: int, message: str) -> None:
        self.error_count += 1
        w = self._w
        w[R.EMU_ERR_COUNT >> 2] = self.error_count & 0xFFFFFFFF
        w[R.EMU_ERR_LAST >> 2] = int(code)
        w[R.EMU_ERR_ARG >> 2] = int(arg) & 0xFFFFFFFF
        w[R.EMU_ERR_QUEUE >> 2] = queue & 0xFFFFFFFF
        self.errors.append(DeviceError(self.gen, code, queue, int(arg), message))

    def _stat(self, slot: int, v: int) -> None:
        i = R.stat_total_off(slot) >> 3
        self._q64[i] = (self._q64[i] + v) & 0xFFFFFFFFFFFFFFFF

    def _in_window(self, addr: int, length: int) -> bool:
        return self.dma_base <= addr and addr + length <= self.dma_limit

    # ------------------------------------------------------------------ main loop
    def process(self) -> bool:
        w = self._w
        busy = False
        # PCI: read the quiesce token first, then BME (the supervisor writes them in
        # the opposite order), so an echoed token proves BME was seen clear.
        req = w[R.PCI_QUIESCE_REQ >> 2]
        bme = w[R.PCI_CMD >> 2] & R.PCI_CMD_BME
        if not bme and w[R.PCI_QUIESCE_ACK >> 2] != req:
            w[R.PCI_QUIESCE_ACK >> 2] = req
            busy = True

        if w[R.CTRL >> 2] & R.CTRL_RST_MASK:
            self._reset()          # clears CTRL, so RST self-clears
            busy = True
        eimc = w[R.EIMC >> 2]
        if eimc:
            w[R.EIMS >> 2] &= ~eimc
            w[R.EIMC >> 2] = 0
        autoc = w[R.AUTOC >> 2]
        if autoc & R.AUTOC_AN_RESTART:
            w[R.AUTOC >> 2] = autoc & ~R.AUTOC_AN_RESTART
            w[R.LINKS >> 2] = 0
            self._link_countdown = self.link_delay
            busy = True
        if self._link_countdown is not None:
            if self._link_countdown <= 0:
                w[R.LINKS >> 2] = R.LINKS_UP | R.LINKS_SPEED_10G_82599
                self._link_countdown = None
                busy = True
            else:
                self._link_countdown -= 1

        for i in range(self.num_queues):
            en = w[self._rxdctl[i]] & R.RXDCTL_ENABLE
            if en and self.rxq[i] is None:
                self._enable_rx(i)
                busy = True
            elif not en and self.rxq[i] is not None:
                self.rxq[i] = None
            en = w[self._txdctl[i]] & R.TXDCTL_ENABLE
            if en and self.txq[i] is None:
                self._enable_tx(i)
                busy = True
            elif not en and self.txq[i] is not None:
                self.txq[i] = None

        if bme and w[R.DMATXCTL >> 2] & R.DMATXCTL_TE:
            for q in self.txq:
                if q is not None and self._tx(q):
                    busy = True
        if self._rx(bool(bme)):
            busy = True
        self.gen = (self.gen + 1) & 0xFFFFFFFF
        w[R.EMU_GEN >> 2] = self.gen
        return busy

    # ------------------------------------------------------------------ queue setup
    def _check_ring(self, q: int, lo: int, hi: int, ln: int, kind: str) -> int | None:
        w = self._w
        base = w[lo >> 2] | (w[hi >> 2] << 32)
        length = w[ln >> 2]
        if length == 0:
            self._error(R.DevErr.RING_NOT_CONFIGURED, q, 0, f"{kind} queue {q} enabled with zero ring length")
            return None
        if base % RING_ALIGN or length % RING_ALIGN:
            self._error(R.DevErr.RING_MISALIGNED, q, base,
                        f"{kind} queue {q}: ring base {base:#x} / length {length} not 128-byte aligned")
            return None
        if not self._in_window(base, length):
            self._error(R.DevErr.BAD_DMA_ADDR, q, base,
                        f"{kind} queue {q}: ring {base:#x}+{length} outside DMA window "
                        f"[{self.dma_base:#x}, {self.dma_limit:#x})")
            return None
        return base

    def _enable_rx(self, i: int) -> None:
        w = self._w
        base = self._check_ring(i, R.RDBAL(i), R.RDBAH(i), R.RDLEN(i), "rx")
        srr = w[R.SRRCTL(i) >> 2]
        bsize = (srr & R.SRRCTL_BSIZEPKT_MASK) << R.SRRCTL_BSIZEPKT_SHIFT
        if base is not None and ((srr & R.SRRCTL_DESCTYPE_MASK) != R.SRRCTL_DESCTYPE_ADV_ONEBUF or bsize == 0):
            self._error(R.DevErr.BAD_SRRCTL, i, srr,
                        f"rx queue {i}: SRRCTL {srr:#x} is not advanced one-buffer with a buffer size")
            base = None
        n = w[R.RDLEN(i) >> 2] // DESC_SIZE
        head = w[self._rdh[i]]
        if base is not None and head >= n:
            self._error(R.DevErr.RDT_OUT_OF_RANGE, i, head, f"rx queue {i}: RDH {head} beyond ring of {n}")
            base = None
        if base is None:
            w[self._rxdctl[i]] &= ~R.RXDCTL_ENABLE
            return
        self.rxq[i] = _Queue(RingView(self.mem, base, n), n, head, base, bsize, i)

    def _enable_tx(self, i: int) -> None:
        w = self._w
        base = self._check_ring(i, R.TDBAL(i), R.TDBAH(i), R.TDLEN(i), "tx")
        n = w[R.TDLEN(i) >> 2] // DESC_SIZE
        head = w[self._tdh[i]]
        if base is not None and head >= n:
            self._error(R.DevErr.TDT_OUT_OF_RANGE, i, head, f"tx queue {i}: TDH {head} beyond ring of {n}")
            base = None
        if base is None:
            w[self._txdctl[i]] &= ~R.TXDCTL_ENABLE
            return
        self.txq[i] = _Queue(RingView(self.mem, base, n), n, head, base, 0, i)

    def _stop_rx(self, i: int) -> None:
        self.rxq[i] = None
        self._w[self._rxdctl[i]] &= ~R.RXDCTL_ENABLE

    def _stop_tx(self, i: int) -> None:
        self.txq[i] = None
        self._w[self._txdctl[i]] &= ~R.TXDCTL_ENABLE

    def _max_frame(self) -> int:
        return MAX_FRAME_JUMBO if self._w[R.HLREG0 >> 2] & R.HLREG0_JUMBOEN else MAX_FRAME_STD

    # ------------------------------------------------------------------ TX
    def _tx(self, q: _Queue) -> bool:
        w = self._w
        i = q.q
        tail = w[self._tdt[i]]
        n = q.n
        if tail >= n:
            self._error(R.DevErr.TDT_OUT_OF_RANGE, i, tail, f"tx queue {i}: TDT {tail} beyond ring of {n}")
            self._stop_tx(i)
            return True
        head = q.head
        avail = (tail - head) % n
        if avail == 0:
            return False
        k = min(avail, self.batch)
        if self._wire_send_array is not None and self._tx_fast(q, head, min(k, n - head)):
            return True
        ring = q.ring
        idx = ring_indices(head, k, n)
        addr = ring.q[idx, 0]
        cmd = ring.d[idx, 2]
        lens = cmd & 0xFFFF
        good = ((cmd & (TXD_DCMD_DEXT | TXD_DTYP_MASK)) == (TXD_DCMD_DEXT | TXD_DTYP_DATA)) & (lens > 0)
        inwin = (addr >= self.dma_base) & (addr + lens <= self.dma_limit)
        ok = good & inwin
        nb = leading_true(ok)
        fault = nb < k
        eop = (cmd[:nb] & TXD_DCMD_EOP) != 0
        if nb and eop.all():
            c = nb
            ends = None
        else:
            # consume only complete frames (through the last EOP)
            e = np.flatnonzero(eop)
            c = int(e[-1]) + 1 if e.size else 0
            ends = e
        if c:
            self._send(q, addr[:c], lens[:c], ends)
            rs = (cmd[:c] & TXD_DCMD_RS) != 0
            tx_encode_wb(ring, idx[:c][rs] if not rs.all() else idx[:c])
            q.head = (head + c) % n
            w[self._tdh[i]] = q.head
        if fault:
            a, cm = int(addr[nb]), int(cmd[nb])
            if not good[nb]:
                self._error(R.DevErr.BAD_TX_DESC, i, cm,
                            f"tx queue {i} desc {int(idx[nb])}: not an advanced data descriptor "
                            f"or zero length (cmd_type_len {cm:#x})")
            else:
                self._error(R.DevErr.BAD_DMA_ADDR, i, a,
                            f"tx queue {i} desc {int(idx[nb])}: buffer {a:#x}+{cm & 0xFFFF} outside DMA window")
            self._stop_tx(i)
        return bool(c) or fault

    def _tx_fast(self, q: _Queue, head: int, k: int) -> bool:
        """The common batch, for a wire that takes frames as one array: k descriptors
        from `head` (not wrapping) that are all the same single-descriptor frame kind
        (advanced data, EOP|RS, one length the wire accepts) with buffers inside the
        DMA window.  Sends them with one gather, writes DD back, advances TDH.
        Returns False, having done nothing, for anything else (`_tx` then runs the
        general path, which finds and reports what is wrong)."""
        ring = q.ring
        cmd = ring.d[head:head + k, 2]
        c = int(cmd.min())
        if c != int(cmd.max()) or c & _TX_FAST_MASK != _TX_FAST_VAL:
            return False
        s = c & 0xFFFF
        if s == 0 or s > self._max_frame() or (s < MIN_FRAME and self._w[R.HLREG0 >> 2] & R.HLREG0_TXPADEN):
            return False
        addr = ring.q[head:head + k, 0]
        if int(addr.min()) < self.dma_base or int(addr.max()) + s > self.dma_limit:
            return False
        frames = self._rows(s)[addr]
        try:
            self._wire_send_array(frames)
        except Exception as e:
            self._error(R.DevErr.WIRE_ERROR, q.q, 0, f"wire send failed: {e!r}")
        self._stat(1, k)                                    # GPTC
        self._stat(3, (s + FCS_LEN) * k)                    # GOTC
        tx_encode_wb(ring, slice(head, head + k))           # DD (every descriptor has RS)
        q.head = (head + k) % q.n
        self._w[self._tdh[q.q]] = q.head
        return True

    def _send(self, q: _Queue, addr: np.ndarray, lens: np.ndarray, ends) -> None:
        mv = self.dma
        maxf = self._max_frame()
        pad = self._w[R.HLREG0 >> 2] & R.HLREG0_TXPADEN
        send_array = getattr(self.wire, "send_array", None)
        if send_array is not None and ends is None:
            s = int(lens[0])
            if (lens == s).all() and s <= maxf and (s >= MIN_FRAME or not pad):
                # one gather for the whole batch instead of a memoryview per frame
                frames = self._rows(s)[addr]
                try:
                    send_array(frames)
                except Exception as e:
                    self._error(R.DevErr.WIRE_ERROR, q.q, 0, f"wire send failed: {e!r}")
                nf = len(frames)
                self._stat(1, nf)                           # GPTC
                self._stat(3, (s + FCS_LEN) * nf)           # GOTC
                return
        if ends is None:
            al = addr.tolist()
            ll = lens.tolist()
            frames = [mv[a:a + ln] for a, ln in zip(al, ll)]
            sizes = ll
        else:
            frames, sizes = [], []
            start = 0
            al = addr.tolist()
            ll = lens.tolist()
            for e in ends.tolist():
                parts = [bytes(mv[al[j]:al[j] + ll[j]]) for j in range(start, e + 1)]
                f = b"".join(parts)
                frames.append(f)
                sizes.append(len(f))
                start = e + 1
        if max(sizes) > maxf or (pad and min(sizes) < MIN_FRAME):
            out, osz = [], []
            for f, s in zip(frames, sizes):
                if s > maxf:
                    self._error(R.DevErr.TX_FRAME_TOO_LONG, q.q, s,
                                f"tx queue {q.q}: frame of {s} bytes exceeds max frame {maxf}")
                    continue
                if pad and s < MIN_FRAME:
                    f = bytes(f) + bytes(MIN_FRAME - s)
                    s = MIN_FRAME
                out.append(f)
                osz.append(s)
            frames, sizes = out, osz
        if not frames:
            return
        try:
            self.wire.send(frames)
        except Exception as e:      # a broken wire is a device problem, not a crash
            self._error(R.DevErr.WIRE_ERROR, q.q, 0, f"wire send failed: {e!r}")
        nf = len(frames)
        self._stat(1, nf)                                   # GPTC
        self._stat(3, sum(sizes) + FCS_LEN * nf)            # GOTC

    # ------------------------------------------------------------------ RX
    def _rx_tail(self, q):
        """RDT of RX queue 0, or None if it points beyond the ring (a device error:
        reported, and the queue stops, as on the 82599)."""
        tail = self._w[self._rdt[0]]
        if tail >= q.n:
            self._error(R.DevErr.RDT_OUT_OF_RANGE, 0, tail, f"rx queue 0: RDT {tail} beyond ring of {q.n}")
            self._stop_rx(0)
            return None
        return tail

    def _rx_array(self, bme: bool, recv_array) -> bool:
        """_rx for a wire that hands over equal-size frames as one array and can
        drop frames without making them (pktgen's ``drop(n)``): the frames that find
        no descriptor are only counted (MPC), never generated and copied, and the
        ones that do are DMAed with one scatter per ring segment.  The same checks,
        counters and errors as `_rx_array_any`, which serves wires without ``drop``."""
        drop = self._wire_drop
        if drop is None:
            return self._rx_array_any(bme, recv_array)
        w = self._w
        q = self.rxq[0]
        batch = self.batch
        mpc = 5                                             # MPC(0) slot
        try:
            if q is None or not bme or not (w[R.RXCTRL >> 2] & R.RXCTRL_RXEN):
                self._stat(mpc, drop(batch))
                return False
            size = self.wire.frame_size
            if size > min(self._max_frame(), q.bufsize):
                self._stat(4, drop(batch))                  # ROC
                return False
            n = q.n
            tail = self._rx_tail(q)
            if tail is None:
                self._stat(mpc, drop(batch))
                return True
            head = q.head
            m = min(batch, (tail - head) % n)
            frames = recv_array(m) if m else None
            k = 0 if frames is None else frames.shape[0]
            extra = drop(batch - m) if k == m and m < batch else 0
        except Exception as e:
            self._error(R.DevErr.WIRE_ERROR, 0, 0, f"wire recv failed: {e!r}")
            return True
        if extra:
            self._stat(mpc, extra)
        if not k:
            return False
        ring = q.ring
        rows = self._rows(size)
        done = 0
        while done < k:                                     # one or two ring segments
            h = (head + done) % n
            c = min(k - done, n - h)
            addr = ring.q[h:h + c, 0]
            if int(addr.min()) < self.dma_base or int(addr.max()) + size > self.dma_limit:
                nb = leading_true((addr >= self.dma_base) & (addr + np.uint64(size) <= self.dma_limit))
            else:
                nb = c
            if nb:
                rows[addr[:nb]] = frames[done:done + nb]
                rx_encode_wb(ring, slice(h, h + nb), size)
                done += nb
            if nb < c:
                a = int(addr[nb])
                self._error(R.DevErr.BAD_DMA_ADDR, 0, a,
                            f"rx queue 0 desc {h + nb}: buffer {a:#x} outside DMA window")
                self._stop_rx(0)
                self._stat(mpc, k - done)
                break
        if done:
            q.head = (head + done) % n
            w[self._rdh[0]] = q.head
            self._stat(0, done)                                 # GPRC
            self._stat(2, (size + FCS_LEN) * done)              # GORC
        return True

    def _rows(self, size: int) -> np.ndarray:
        """byte_rows of DMA memory, one view per frame size."""
        v = self._row_views.get(size)
        if v is None:
            v = self._row_views[size] = byte_rows(self.mem, size)
        return v

    def _rx_array_any(self, bme: bool, recv_array) -> bool:
        """_rx for a wire that hands over equal-size frames as one array: one
        scatter into the buffers for the whole batch.  Same checks, same counters."""
        try:
            frames = recv_array(self.batch)
        except Exception as e:
            self._error(R.DevErr.WIRE_ERROR, 0, 0, f"wire recv failed: {e!r}")
            return True
        k, size = frames.shape
        if not k:
            return False
        w = self._w
        q = self.rxq[0]
        mpc = 5                                             # MPC(0) slot
        if q is None or not bme or not (w[R.RXCTRL >> 2] & R.RXCTRL_RXEN):
            self._stat(mpc, k)
            return False
        if size > min(self._max_frame(), q.bufsize):
            self._stat(4, k)                                # ROC
            return False
        n = q.n
        tail = w[self._rdt[0]]
        if tail >= n:
            self._error(R.DevErr.RDT_OUT_OF_RANGE, 0, tail, f"rx queue 0: RDT {tail} beyond ring of {n}")
            self._stop_rx(0)
            self._stat(mpc, k)
            return True
        head = q.head
        m = min(k, (tail - head) % n)
        if m:
            ring = q.ring
            idx = ring_indices(head, m, n)
            addr = ring.q[idx, 0]
            ok = (addr >= self.dma_base) & (addr + np.uint64(size) <= self.dma_limit)
            nb = leading_true(ok)
            if nb:
                self._rows(size)[addr[:nb]] = frames[:nb]
                rx_encode_wb(ring, idx[:nb], np.full(nb, size, dtype=np.uint64), RXD_STAT_DD | RXD_STAT_EOP)
                q.head = (head + nb) % n
                w[self._rdh[0]] = q.head
                self._stat(0, nb)                                   # GPRC
                self._stat(2, (size + FCS_LEN) * nb)                # GORC
            if nb < m:
                a = int(addr[nb])
                self._error(R.DevErr.BAD_DMA_ADDR, 0, a,
                            f"rx queue 0 desc {int(idx[nb])}: buffer {a:#x} outside DMA window")
                self._stop_rx(0)
                self._stat(mpc, k - nb)
                return True
        if k > m:
            self._stat(mpc, k - m)
        return m > 0

    def _rx(self, bme: bool) -> bool:
        recv_array = getattr(self.wire, "recv_array", None)
        if recv_array is not None:
            return self._rx_array(bme, recv_array)
        try:
            frames = self.wire.recv(self.batch)
        except Exception as e:
            self._error(R.DevErr.WIRE_ERROR, 0, 0, f"wire recv failed: {e!r}")
            return True
        if not frames:
            return False
        w = self._w
        q = self.rxq[0]
        mpc = 5                                             # MPC(0) slot
        if q is None or not bme or not (w[R.RXCTRL >> 2] & R.RXCTRL_RXEN):
            self._stat(mpc, len(frames))
            return False   # dropping is not work (see the module docstring)
        maxf = min(self._max_frame(), q.bufsize)
        sizes = [len(f) for f in frames]
        if max(sizes) > maxf:
            keep = [j for j, s in enumerate(sizes) if s <= maxf]
            self._stat(4, len(frames) - len(keep))          # ROC
            frames = [frames[j] for j in keep]
            sizes = [sizes[j] for j in keep]
            if not frames:
                return True
        n = q.n
        tail = self._rx_tail(q)
        if tail is None:
            self._stat(mpc, len(frames))
            return True
        head = q.head
        avail = (tail - head) % n
        m = min(len(frames), avail)
        if m:
            ring = q.ring
            idx = ring_indices(head, m, n)
            addr = ring.q[idx, 0]
            lens = np.array(sizes[:m], dtype=np.uint64)
            ok = (addr >= self.dma_base) & (addr + lens <= self.dma_limit)
            nb = leading_true(ok)
            if nb:
                mv = self.dma
                for a, f, s in zip(addr[:nb].tolist(), frames, sizes):
                    mv[a:a + s] = f
                rx_encode_wb(ring, idx[:nb], lens[:nb], RXD_STAT_DD | RXD_STAT_EOP)
                q.head = (head + nb) % n
                w[self._rdh[0]] = q.head
                self._stat(0, nb)                                   # GPRC
                self._stat(2, sum(sizes[:nb]) + FCS_LEN * nb)       # GORC
            if nb < m:
                a = int(addr[nb])
                self._error(R.DevErr.BAD_DMA_ADDR, 0, a,
                            f"rx queue 0 desc {int(idx[nb])}: buffer {a:#x} outside DMA window")
                self._stop_rx(0)
                self._stat(mpc, len(frames) - nb)
                return True
        if len(frames) > m:
            self._stat(mpc, len(frames) - m)
        return m > 0      # dropping is not work: a device with a full ring may sleep

    # ------------------------------------------------------------------ introspection
    def status(self) -> dict:
        w = self._w
        return {
            "gen": self.gen, "resets": self.resets,
            "bme": bool(w[R.PCI_CMD >> 2] & R.PCI_CMD_BME),
            "link_up": bool(w[R.LINKS >> 2] & R.LINKS_UP),
            "rx_queues": [q is not None for q in self.rxq],
            "tx_queues": [q is not None for q in self.txq],
            "errors": self.error_count,
            "last_errors": [e.message for e in list(self.errors)[-5:]],
        }

    def close(self) -> None:
        """Drop every view of the shared buffers (so the shell can unmap them)."""
        self.rxq = [None] * self.num_queues
        self.txq = [None] * self.num_queues
        self._real = None
        self.mem = None
        self._row_views = {}
        for v in (self._w, self._q64):
            try:
                v.release()
            except Exception:
                pass
