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
  driver needs to empty it).  RX and TX each have one path whose checks run on
  the whole batch; only the data movement depends on the wire: one numpy
  scatter/gather per batch for a wire with ``recv_array``/``send_array``, one
  copy a frame otherwise, and frames that find no descriptor are taken with the
  wire's ``discard`` (a generator does not build them).
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
from .descriptors import (DESC_SIZE, RING_ALIGN, RingView, TXD_DCMD_DEXT, TXD_DCMD_EOP, TXD_DCMD_RS,
                          TXD_DTYP_DATA, TXD_DTYP_MASK, byte_rows, leading_true, ring_indices,
                          ring_segments, rx_encode_wb, tx_encode_wb)

FCS_LEN = 4
_TX_DATA = TXD_DCMD_DEXT | TXD_DTYP_DATA          # an advanced data descriptor
MIN_FRAME = 60             # without FCS; TXPADEN pads to this
MAX_FRAME_STD = 1514       # without FCS
MAX_FRAME_JUMBO = 9216


class DeviceError(NamedTuple):
    gen: int               # device process() generation when it happened
    code: R.DevErr
    queue: int
    arg: int
    message: str


class _WireFailed(Exception):
    """The wire raised while the NIC took frames from it (a device error, not a crash)."""


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
        self._wire_send_array = getattr(wire, "send_array", None)
        self._wire_recv_array = getattr(wire, "recv_array", None)
        self._wire_discard = getattr(wire, "discard", None)
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

    def _in_window_mask(self, addr: np.ndarray, length) -> np.ndarray:
        """_in_window per descriptor (uint64 addresses and lengths), written so that
        an address near 2**64 cannot wrap around into the window."""
        limit = np.uint64(self.dma_limit)
        return (addr >= np.uint64(self.dma_base)) & (length <= limit) & (addr <= limit - length)

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
        """Send what the driver queued between TDH and TDT (at most `batch`
        descriptors).  Per descriptor, in ring order: an advanced data descriptor
        with a non-zero length and a buffer inside the DMA window is taken; frames
        end at EOP and only complete frames are consumed; DD is written back for RS
        descriptors.  The first descriptor that is not good is a device error that
        stops the queue (after the complete frames before it went out)."""
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
        ring = q.ring
        # a slice (views, no index array) unless the batch wraps
        idx = slice(head, head + k) if head + k <= n else ring_indices(head, k, n)
        addr = ring.q[idx, 0]
        cmd = ring.d[idx, 2]
        lens = cmd & 0xFFFF
        # the per-descriptor checks, on the whole batch; most batches pass them all
        # in a few reductions, and only a batch that does not pays for the masks
        c0 = int(cmd[0])
        if (int(cmd.min()) == int(cmd.max()) and c0 & (TXD_DCMD_DEXT | TXD_DTYP_MASK) == _TX_DATA
                and c0 & 0xFFFF and int(addr.min()) >= self.dma_base
                and int(addr.max()) + (c0 & 0xFFFF) <= self.dma_limit):
            # one descriptor kind, all good: EOP and RS are the same for all of them
            good, nb, size = None, k, c0 & 0xFFFF
            c, ends = (k, None) if c0 & TXD_DCMD_EOP else (0, None)
            rs = bool(c0 & TXD_DCMD_RS)
        else:
            good = ((cmd & (TXD_DCMD_DEXT | TXD_DTYP_MASK)) == _TX_DATA) & (lens > 0)
            nb = leading_true(good & self._in_window_mask(addr, lens))
            size = None
            eop = (cmd[:nb] & TXD_DCMD_EOP) != 0
            if nb and eop.all():
                c, ends = nb, None
            else:
                # consume only complete frames (through the last EOP)
                e = np.flatnonzero(eop)
                c = int(e[-1]) + 1 if e.size else 0
                ends = e
            rs = (cmd[:c] & TXD_DCMD_RS) != 0
            rs = True if rs.all() else (False if not rs.any() else rs)
        if c:
            self._send(q, addr[:c], lens[:c], ends, size)
            done = idx if c == k else (slice(head, head + c) if type(idx) is slice else idx[:c])
            if rs is True:
                tx_encode_wb(ring, done)
            elif rs is not False:
                tx_encode_wb(ring, np.asarray(ring_indices(head, c, n))[rs])
            q.head = (head + c) % n
            w[self._tdh[i]] = q.head
        fault = nb < k
        if fault:
            a, cm = int(addr[nb]), int(cmd[nb])
            d = (head + nb) % n
            if not good[nb]:
                self._error(R.DevErr.BAD_TX_DESC, i, cm,
                            f"tx queue {i} desc {d}: not an advanced data descriptor "
                            f"or zero length (cmd_type_len {cm:#x})")
            else:
                self._error(R.DevErr.BAD_DMA_ADDR, i, a,
                            f"tx queue {i} desc {d}: buffer {a:#x}+{cm & 0xFFFF} outside DMA window")
            self._stop_tx(i)
        return bool(c) or fault

    def _send(self, q: _Queue, addr: np.ndarray, lens: np.ndarray, ends, size: int | None = None) -> None:
        """Put the frames of descriptors (addr, lens) on the wire: one frame a
        descriptor (`ends` None) or frames ending at the descriptors in `ends`
        (`size`: every length, when the caller knows they are all equal).  Per
        frame: longer than the max frame it is dropped with a device error; shorter
        than 60 bytes it is padded when HLREG0.TXPADEN is set."""
        mv = self.dma
        maxf = self._max_frame()
        pad = self._w[R.HLREG0 >> 2] & R.HLREG0_TXPADEN
        send_array = self._wire_send_array
        if send_array is not None and ends is None:
            s = int(lens[0]) if size is None else size
            if ((size is not None or int(lens.min()) == int(lens.max()))
                    and s <= maxf and (s >= MIN_FRAME or not pad)):
                # equal frames that need no per-frame treatment: one gather for all
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
    # One receive path (`_rx`).  Per frame, in wire order: with no queue accepting
    # (none enabled, BME or RXCTRL.RXEN clear) it is missed (MPC); longer than the
    # queue's buffer or the max frame it is an oversize (ROC); with a free
    # descriptor whose buffer lies in the DMA window it is DMAed and written back
    # (GPRC, GORC); at the first descriptor whose buffer does not, a device error
    # stops the queue and that frame and every later one is missed; with no free
    # descriptor it is missed.  How frames move differs by wire, never the rules:
    # a wire that offers `recv_array` hands over equal-size frames as one array
    # (one scatter per ring segment), any other a list (one copy a frame); frames
    # that can only be missed are taken with the wire's `discard`, which a
    # generator answers without making them.

    def _rx_tail(self, q):
        """RDT of RX queue 0, or None if it points beyond the ring (a device error:
        reported, and the queue stops, as on the 82599)."""
        tail = self._w[self._rdt[0]]
        if tail >= q.n:
            self._error(R.DevErr.RDT_OUT_OF_RANGE, 0, tail, f"rx queue 0: RDT {tail} beyond ring of {q.n}")
            self._stop_rx(0)
            return None
        return tail

    def _take(self, k: int):
        """Up to k frames from the wire: (n, lens, frames).  For a wire of equal-size
        frames (`recv_array`) `frames` is an (n, size) uint8 array and `lens` the
        size, an int; otherwise `frames` is a list and `lens` a uint64 array."""
        try:
            ra = self._wire_recv_array
            if ra is not None:
                a = ra(k)
                return a.shape[0], a.shape[1], a
            fl = self.wire.recv(k)
        except Exception as e:
            raise _WireFailed(e) from e
        return len(fl), np.fromiter(map(len, fl), dtype=np.uint64, count=len(fl)), fl

    def _discard(self, k: int):
        """Up to k frames taken from the wire to be missed: (n, lens) as `_take`."""
        try:
            d = self._wire_discard
            if d is not None:                       # equal-size frames, never built
                return d(k), self.wire.frame_size
            n, lens, _f = self._take(k)
            return n, lens
        except Exception as e:
            raise _WireFailed(e) from e

    def _miss(self, n: int, lens, maxf: int) -> None:
        """Count frames that found no place: oversize ones as ROC, the rest as MPC."""
        if not n:
            return
        big = (n if lens > maxf else 0) if type(lens) is int else int(np.count_nonzero(lens > maxf))
        if big:
            self._stat(4, big)                              # ROC
        if n - big:
            self._stat(5, n - big)                          # MPC(0)

    def _rx(self, bme: bool) -> bool:
        """Receive up to `batch` frames from the wire into RX queue 0.  Returns
        whether there was work: dropping frames is not (a device whose ring is full
        may sleep until the driver rings)."""
        w = self._w
        q = self.rxq[0]
        budget = self.batch
        try:
            if q is None or not bme or not (w[R.RXCTRL >> 2] & R.RXCTRL_RXEN):
                self._stat(5, self._discard(budget)[0])     # MPC(0)
                return False
            maxf = min(self._max_frame(), q.bufsize)
            tail = self._rx_tail(q)
            if tail is None:
                self._miss(*self._discard(budget), maxf)
                return True
            room = (tail - q.head) % q.n
            placed = 0
            more = True                                 # the wire may have more frames
            while budget and room and more:
                ask = min(budget, room)
                k, lens, frames = self._take(ask)
                more = k == ask
                budget -= k
                if not k:
                    break
                if type(lens) is int:                   # equal frames: all fit or none
                    if lens > maxf:
                        self._stat(4, k)                # ROC
                        continue
                else:
                    big = lens > maxf
                    if big.any():                       # oversize: counted, not placed
                        self._stat(4, int(np.count_nonzero(big)))   # ROC
                        keep = np.flatnonzero(~big)
                        lens = lens[keep]
                        frames = [frames[j] for j in keep.tolist()]
                        k = lens.size
                        if not k:
                            continue
                nb = self._place(q, k, lens, frames)
                placed += nb
                room -= nb
                if nb < k:                              # a bad buffer stopped the queue
                    self._stat(5, k - nb)               # MPC(0)
                    if more and budget:
                        self._miss(*self._discard(budget), maxf)
                    return True
            if more and budget:                         # the ring is full: the rest is missed
                self._miss(*self._discard(budget), maxf)
        except _WireFailed as e:
            self._error(R.DevErr.WIRE_ERROR, 0, 0, f"wire recv failed: {e.__cause__!r}")
            return True
        return placed > 0

    def _place(self, q: _Queue, k: int, lens, frames) -> int:
        """DMA `k` frames (no more than the free descriptors; `lens` and `frames` as
        `_take` gives them) into the buffers of the descriptors from RDH, write them
        back, advance RDH, count them.  Stops at the first buffer outside the DMA
        window: a device error that stops the queue.  Returns how many were placed."""
        ring, n, head = q.ring, q.n, q.head
        uniform = type(lens) is int
        done = 0
        fault = False
        for slots, lo, hi in ring_segments(head, k, n):
            addr = ring.q[slots, 0]
            seg = lens if uniform else lens[lo:hi]
            top = int(addr.max()) + (seg if uniform else int(seg.max()))
            if int(addr.min()) >= self.dma_base and top <= self.dma_limit:
                nb = hi - lo
            else:
                nb = leading_true(self._in_window_mask(addr, np.uint64(seg) if uniform else seg))
            if nb:
                if uniform:
                    self._rows(lens)[addr[:nb]] = frames[lo:lo + nb]
                else:
                    mv = self.dma
                    for a, f in zip(addr[:nb].tolist(), frames[lo:lo + nb]):
                        mv[a:a + len(f)] = f
                put = slots if nb == hi - lo else slice(slots.start, slots.start + nb)
                rx_encode_wb(ring, put, seg if uniform else seg[:nb])
                done += nb
            if nb < hi - lo:
                a = int(addr[nb])
                self._error(R.DevErr.BAD_DMA_ADDR, 0, a,
                            f"rx queue 0 desc {slots.start + nb}: buffer {a:#x} outside DMA window")
                fault = True
                break
        if done:
            q.head = (head + done) % n
            self._w[self._rdh[0]] = q.head
            self._stat(0, done)                                         # GPRC
            self._stat(2, (lens * done if uniform else int(lens[:done].sum())) + FCS_LEN * done)  # GORC
        if fault:
            self._stop_rx(0)
        return done

    def _rows(self, size: int) -> np.ndarray:
        """byte_rows of DMA memory, one view per frame size."""
        v = self._row_views.get(size)
        if v is None:
            v = self._row_views[size] = byte_rows(self.mem, size)
        return v

    # ------------------------------------------------------------------ idle
    def next_deadline(self) -> float | None:
        """Seconds until process() must run again although no doorbell rang and the
        wire's fd did not turn readable; None: only such an event can bring work, so
        an idle device process may sleep on its doorbell without a timeout.

        The link comes up after `link_delay` calls (0: call at once).  Frames that
        could only be missed are not work (the driver rings when it frees RX
        descriptors), so a stopped queue or a full ring waits for the doorbell.
        Otherwise the wire says: `poll_s` (seconds, or None) for a wire whose frames
        arrive without waking anyone (a shared-memory cable, a generator)."""
        if self._link_countdown is not None:
            return 0.0
        q = self.rxq[0]
        w = self._w
        if (q is None or not w[R.PCI_CMD >> 2] & R.PCI_CMD_BME or not w[R.RXCTRL >> 2] & R.RXCTRL_RXEN
                or (w[self._rdt[0]] - q.head) % q.n == 0):
            return None
        poll = getattr(self.wire, "poll_s", None)
        return poll() if callable(poll) else poll

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
