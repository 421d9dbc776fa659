"""The ixgbe driver domain: binds an emulated 82599, runs ixy's init sequence, and
exports `Net` (the benchmarks' application-inside-the-driver configuration is
pktapp.InDriverPktApp, a subclass, never this production domain).

Manifest:

    [[device]]
    name = "ixgbe0-dev"
    target = "redleaf.drivers.ixgbe.device:IxgbeDevice"
    config = { wire = "loopback" }

    [[domain]]
    name = "ixgbe0"
    target = "redleaf.drivers.ixgbe.domain:IxgbeNetDriver"
    config = { device = "ixgbe0-dev", rx_desc = 512, tx_desc = 512, rx_wait_us = 100 }
    shadow = true          # clients see no error when the driver crashes

Zero copy: packet buffers are `Packet` heap objects; their heap offsets are the DMA
addresses written into the descriptors, so the only copies are the "hardware"'s (the
device process DMAs between the wire and the buffers).  While a buffer sits in the
RX or TX ring the driver domain owns it; if the driver dies, the supervisor first
quiesces the device (no more DMA), then reclaims them.

Restart: a new incarnation binds the device again and runs the full init sequence,
whose global reset makes the device forget the dead driver's rings.

One `Net` client at a time (drivers/one_client.py): the rings are not labelled by
client, so a second client would receive into the first one's buffers and be handed
its transmitted ones, data included.  While the current client has buffers here,
another client's call fails with a NetError saying so; once it has gone, the next
client's first call resets the NIC (the device forgets the rings, so nothing is sent
or received into them any more) and frees every buffer the departed client left.
"""

from __future__ import annotations

import os
import time

import numpy as np

from redleaf.drivers.net import MAX_FRAME, PACKET_BUF, Net, NetError, NetStats, PacketOps, client_errors_as_net_errors

from . import regs as R
from redleaf.drivers.binding import DeviceBinding
from redleaf.drivers.one_client import OneClientAtATime

from .driver_core import DriverError, IxgbeDriver

_EMPTY = np.empty(0, dtype=np.int64)


class IxgbeNetDriver(OneClientAtATime, Net):
    SHADOW = "redleaf.drivers.ixgbe.shadow:IxgbeShadow"
    client_error, client_iface, _outstanding_what = NetError, "Net", "buffers in the driver"

    def __init__(self, ctx):
        self.ctx = ctx
        self.rt = ctx.rt
        cfg = ctx.config
        dev = cfg.get("device", "ixgbe0-dev")
        self.binding = DeviceBinding(ctx, dev)
        self.bar = self.binding.bar
        self.dev_waker = self.binding.waker
        self.core = IxgbeDriver(self.bar, self.binding.dma_alloc, num_rx_desc=int(cfg.get("rx_desc", 512)),
                                num_tx_desc=int(cfg.get("tx_desc", 512)), buf_size=PACKET_BUF,
                                step=self._step, timeout=float(cfg.get("init_timeout_s", 5.0)),
                                link_timeout=float(cfg.get("init_timeout_s", 5.0)))
        try:
            self.core.init()
        except DriverError as e:
            raise DriverError(f"{ctx.name}: initialising device {dev}: {e}") from None
        self.ops = PacketOps(ctx.heap)
        self.tx_done = _EMPTY          # transmitted buffers not yet handed back
        self.tx_accepted = None        # (offsets, lengths) taken, put in the ring after the answer
        self.tx_rejected = 0
        # an RX submit_and_poll that finds nothing received polls this long before
        # answering empty (see _wait_rx); 0: answer at once
        self.rx_wait_ns = int(float(cfg.get("rx_wait_us", 100)) * 1000)
        ctx.export(ctx.name, self, Net)

    # -- plumbing -------------------------------------------------------------------------
    def _step(self) -> None:
        self.dev_waker.wake()
        time.sleep(0.0002)

    def _reap_tx(self) -> None:
        done = self.core.tx_reclaim_arrays()
        if done.size:
            self.tx_done = done if not self.tx_done.size else np.concatenate([self.tx_done, done])

    def _give_back_tx(self, collect) -> int:
        if not self.tx_done.size:
            return 0
        # buffers this domain took from a client deque (checked then) and tracked in
        # its rings since: put back without a second check (the client checks them
        # when it takes them), as RecordOps.put_records
        k = self.ops.put_records(collect, *self.ops.records_of(self.tx_done))
        self.tx_done = self.tx_done[k:]
        return k

    def _rx_into(self, collect, refill: bool = True) -> int:
        room = self.ops.room(collect)
        if room <= 0:
            self.core.refill()                 # still refill the ring from the pool
            return 0
        offs, lens = self.core.rx_batch_arrays(room, refill)
        if not offs.size:
            return 0
        self.ops.set_lengths(offs, lens)
        return self.ops.put_records(collect, *self.ops.records_of(offs))   # tracked since taken

    def _wait_rx(self) -> None:
        """Nothing received yet, but the device holds RX buffers: poll the next
        descriptor for up to `rx_wait_us` before answering (NAPI-style busy polling
        with a budget), yielding the CPU between polls (the device may share it).
        An empty answer costs the caller a whole round trip; a frame usually
        arrives within one device pass."""
        core = self.core
        now = time.monotonic_ns
        deadline = now() + self.rx_wait_ns
        while not core.rx_ready() and now() < deadline:
            os.sched_yield()

    def _rx_room(self) -> int:
        c = self.core
        return c.nrx - 1 - (c._rx_fill - c._rx_recv) - len(c.pool)

    # -- one client at a time ------------------------------------------------------------
    def _outstanding(self) -> int:
        acc = self.tx_accepted
        return len(self.core.buffers_held()) + int(self.tx_done.size) + (acc[0].size if acc else 0)

    def _abandon(self) -> None:
        """The client that had buffers here has gone: reset the NIC, then free them."""
        self._issue_tx()      # (normally done already, right after the call that took them)
        held = self.core.reset()
        if self.tx_done.size:
            held = np.concatenate([held, self.tx_done])
            self.tx_done = _EMPTY
        self.ops.free(held)
        print(f"redleaf: {self.ctx.name}: the Net client of channel {self.client} has gone; NIC reset, "
              f"{held.size} buffers it left freed", flush=True)

    # -- Net ----------------------------------------------------------------------------------
    @client_errors_as_net_errors
    def submit_and_poll(self, packets, collect, tx: bool):
        self._claim()
        return self._submit_and_poll(packets, collect, tx, defer=True)

    @client_errors_as_net_errors
    def poll(self, collect, tx: bool):
        self._claim()
        return self._poll(collect, tx)

    def _refill_rx(self) -> None:
        if self.core.refill():
            self.dev_waker.wake()

    def _issue_tx(self) -> None:
        acc = self.tx_accepted
        if acc is not None:
            self.tx_accepted = None
            self.core.tx_batch_arrays(*acc)
            self.dev_waker.wake()

    def _submit_and_poll(self, packets, collect, tx: bool, defer: bool = False):
        """`defer`: a remote client's call.  Then the work whose result the caller
        does not need (writing the accepted TX descriptors, refilling the RX ring) is
        a bottom half (Runtime.defer), done once the caller has its answer, while it
        goes on with its own work.  A caller inside this domain (pktapp) calls with
        defer=False: nothing would run the bottom half before its next call."""
        core, ops = self.core, self.ops
        self._issue_tx()                     # (normally done already, after the last answer)
        if tx:
            self._reap_tx()
            offs = ops.take(packets, core.ntx - 1 - core.tx_in_flight())
            n = 0
            if offs.size:
                lens = ops.lengths(offs)
                if int(lens.min()) < 14 or int(lens.max()) > MAX_FRAME:
                    # never hand the device a length it would refuse: bounce them
                    bad = (lens < 14) | (lens > MAX_FRAME)
                    self.tx_rejected += int(bad.sum())   # (back in `collect`, not counted in n)
                    self.tx_done = np.concatenate([self.tx_done, offs[bad]])
                    offs, lens = offs[~bad], lens[~bad]
                if offs.size:
                    if defer:
                        # accepted now (the ring has room: take() took no more), put in
                        # the ring once the caller has its answer: the caller goes on
                        # meanwhile (a bottom half, as the NVMe driver's)
                        self.tx_accepted = (offs, lens)
                        self.rt.defer(self._issue_tx)
                        n = int(offs.size)
                    else:
                        n = core.tx_batch_arrays(offs, lens)
                        self.dev_waker.wake()
            self._give_back_tx(collect)
        else:
            offs = ops.take(packets, self._rx_room())
            n = int(offs.size)
            if n:
                core.give_rx_buffers(offs, refill=False)   # _rx_into refills the ring, once
            got = self._rx_into(collect, refill=not defer)
            if got and defer:
                self.rt.defer(self._refill_rx)       # the ring's new buffers: after the answer
            else:
                moved = defer and core.refill()      # nothing received: the ring needs them now
                if n or moved:
                    self.dev_waker.wake()
            if not got and self.rx_wait_ns and core.rx_waiting() and ops.room(collect):
                self._wait_rx()
                self._rx_into(collect)
        return n, packets, collect

    def _poll(self, collect, tx: bool):
        self._issue_tx()
        if tx:
            self._reap_tx()
            k = self._give_back_tx(collect)
        else:
            k = self._rx_into(collect)
        return k, collect

    def stats(self):
        s = self.core.stats()
        v = NetStats.zeros()
        v["rx_packets"], v["tx_packets"] = s["rx_packets"], s["tx_packets"]
        v["rx_bytes"], v["tx_bytes"] = s["rx_bytes"], s["tx_bytes"]
        v["rx_missed"] = s["rx_missed"]
        v["device_errors"] = R.device_errors(self.bar)[0]
        v["cpu_ns"] = time.process_time_ns()
        v["incarnation"] = self.rt.domain_id
        return v

    def shutdown(self) -> None:
        try:
            self.core.shutdown()
        except Exception:
            pass

