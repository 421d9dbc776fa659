"""The ixgbe shadow: a `Net` in front of the driver that hides driver crashes.

`shadow = true` on the driver's manifest entry makes the supervisor run the real
driver as `<name>.driver` and this class under `<name>`, with
config["driver"] = "<name>.driver" and uses = {"driver": "<name>.driver"}.

Every call is forwarded.  If the driver dies (DomainCrashed, or RpcTimeout: a hung
driver is killed), the shadow waits for the supervisor to restart it (the restarted
driver resets and re-initialises the NIC), and returns as if the call had handled
nothing.  What the crash takes with it, as a NIC reset would: the packets in flight,
i.e. the buffers the driver held (RX ring, TX ring) and the deques of the failed
call.  No packet is ever re-sent, so none is delivered twice; received packets come
only from descriptors the restarted device wrote back, so none arrives corrupted.

The clients' buffers are heap objects the dead driver owned, so they are reclaimed
with it.  The shadow keeps count of how many buffers the driver holds for its clients
(taken minus given back, per call) and after a crash allocates as many replacements,
handing them back as free buffers (the untaken part of an RX submit, or the
completed part of a TX submit) so that a client's buffer pool does not shrink.  The
replacements come from a reserve allocated in advance (config `reserve`, default
2048 packets) and topped up a little per call afterwards.

One client at a time, as the driver (drivers/one_client.py): the driver sees only
the shadow, so the shadow keeps the rule for its own clients.  When the client that
had buffers in the driver has gone, the next client's first call makes the shadow
close its channel to the driver and open a new one: to the driver that is its client
leaving, so it resets the NIC and frees the departed client's buffers.  Replacements
owed to the departed client are freed here.
"""

from __future__ import annotations

import time

import numpy as np

from redleaf.domains.errors import DomainCrashed, DomainUnavailable, RpcTimeout
from redleaf.drivers.net import Net, NetError, NetStats, PacketOps, client_errors_as_net_errors
from redleaf.drivers.one_client import OneClientAtATime

_EMPTY = np.empty(0, dtype=np.int64)


class IxgbeShadow(OneClientAtATime, Net):
    client_error, client_iface, _outstanding_what = NetError, "Net", "buffers in the driver"

    def __init__(self, ctx):
        self.ctx = ctx
        self.ops = PacketOps(ctx.heap)
        self.driver_name = ctx.config.get("driver", f"{ctx.name}.driver")
        # below Net's call deadline (30 s), or our own callers would declare us hung
        self.restart_timeout = float(ctx.config.get("restart_timeout_s", 20.0))
        self.drv = self._connect(ctx)
        self.held = 0            # client buffers the driver currently holds
        self.spare = _EMPTY      # replacement buffers owed to clients (owned here)
        self.recoveries = 0
        self.peer = self.drv._rl_link.peer   # the driver incarnation we talk to
        self.lost = 0            # buffers lost in driver crashes (and replaced)
        # replacements ready before any crash, so recovery does not wait for allocation
        self.reserve_target = int(ctx.config.get("reserve", 2048))
        self.reserve = self.ops.alloc_packets(self.reserve_target)
        ctx.export(ctx.name, self, Net)

    def _connect(self, ctx):
        """The driver's proxy; a restarted shadow may find the driver restarting too."""
        deadline = None
        while True:
            try:
                return ctx.use("driver", Net)
            except DomainUnavailable:
                deadline = self._wait(deadline)

    # -- recovery ---------------------------------------------------------------------------
    def _call(self, fn, *args):
        """fn(*args) on the driver, waiting out a restart while the driver is unavailable.
        Returns the result, or None if the driver died with the arguments."""
        deadline = None
        while True:
            try:
                r = fn(*args)
                self._check_incarnation()
                return r
            except (DomainCrashed, RpcTimeout):
                if all(getattr(a, "alive", True) for a in args):
                    # died before the call took anything: retry it as it is
                    deadline = self._wait(deadline)
                    continue
                self._wait_up(deadline)
                self.peer = self.drv._rl_link.peer
                self.recoveries += 1
                return None
            except DomainUnavailable:
                deadline = self._wait(deadline)

    def _wait(self, deadline):
        now = time.monotonic()
        if deadline is None:
            deadline = now + self.restart_timeout
        elif now > deadline:
            raise NetError(f"driver {self.driver_name} did not come back within {self.restart_timeout:.0f}s")
        time.sleep(0.001)
        rt = self.ctx.rt
        rt.beat()   # we are alive, only waiting: the watchdog must see it
        return deadline

    def _wait_up(self, deadline) -> None:
        """Block until the restarted driver answers (the link re-looks-up by itself)."""
        while True:
            try:
                self.drv.stats()
                return
            except (DomainCrashed, DomainUnavailable, RpcTimeout):
                deadline = self._wait(deadline)

    def _check_incarnation(self) -> None:
        """A driver that died while no call was in flight is replaced silently (the
        link looks the name up again); what it held is lost all the same."""
        peer = self.drv._rl_link.peer
        if peer != self.peer:
            self.peer = peer
            self.recoveries += 1
            self._crashed(0)

    def _crashed(self, before: int) -> None:
        lost = max(self.held, 0) + before
        self.held = 0
        self.lost += lost
        if not lost:
            return
        take = self.reserve[:lost]
        self.reserve = self.reserve[lost:]
        fresh = [take]
        if take.size < lost:
            fresh.append(self.ops.alloc_packets(lost - take.size))
        self.spare = np.concatenate([self.spare] + fresh)

    def _refill_reserve(self) -> None:
        """Top the reserve up a little per call, off the recovery path."""
        short = self.reserve_target - self.reserve.size
        if short > 0:
            self.reserve = np.concatenate([self.reserve, self.ops.alloc_packets(min(short, 64))])

    def _pay_back(self, dq) -> None:
        if self.spare.size:
            k = self.ops.put(dq, self.spare)
            self.spare = self.spare[k:]

    # -- one client at a time ------------------------------------------------------------
    def _outstanding(self) -> int:
        return max(self.held, 0) + int(self.spare.size)

    def _abandon(self) -> None:
        """The client with buffers in the driver has gone: a new channel to the driver
        tells it so (it resets the NIC and frees them on our next call)."""
        if self.spare.size:
            self.ops.free(self.spare)
            self.spare = _EMPTY
        self.held = 0
        try:
            self.drv._rl_link.connect()      # closes the old channel first
        except DomainUnavailable:
            pass   # restarting: the new incarnation starts from a reset NIC anyway

    # -- Net ----------------------------------------------------------------------------------
    @client_errors_as_net_errors
    def submit_and_poll(self, packets, collect, tx: bool):
        self._claim()
        before = len(packets) + len(collect)
        cap_p, cap_c = packets.capacity, collect.capacity
        r = self._call(self.drv.submit_and_poll, packets, collect, tx)
        if r is None:
            self._crashed(before)
            n, packets, collect = 0, self.ops.deque(cap_p), self.ops.deque(cap_c)
        else:
            n, packets, collect = r
            self.held += before - len(packets) - len(collect)
        self._pay_back(collect if tx else packets)
        if self.reserve.size < self.reserve_target:
            self._refill_reserve()
        return n, packets, collect

    @client_errors_as_net_errors
    def poll(self, collect, tx: bool):
        self._claim()
        before = len(collect)
        cap_c = collect.capacity
        r = self._call(self.drv.poll, collect, tx)
        if r is None:
            self._crashed(before)
            k, collect = 0, self.ops.deque(cap_c)
        else:
            k, collect = r
            self.held -= len(collect) - before
        if tx:
            self._pay_back(collect)
        return k, collect

    def stats(self):
        r = self._call(self.drv.stats)
        v = r if r is not None else NetStats.zeros()
        v["incarnation"] = self.recoveries
        return v
