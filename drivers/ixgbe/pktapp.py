"""The packet application inside the driver domain: RedLeaf's "in-driver"
configuration, for benchmarks and tests, never the production driver.

Manifest (in place of the plain driver domain):

    [[domain]]
    name = "ixgbe0"
    target = "redleaf.drivers.ixgbe.pktapp:InDriverPktApp"
    config = { device = "ixgbe0-dev", app_packets = 2048 }

`InDriverPktApp` is the ixgbe driver domain (it exports `Net` exactly as
`IxgbeNetDriver` does) plus `NetApp`: a PacketLoop whose `Net` is the driver's own
methods, plain calls with no boundary, so that comparing it with the same loop in
its own domain (l2fwd_domain) measures only the crossing.  The application is part
of the driver and bypasses the one-client rule; a remote client that is idle
meanwhile keeps its place.

Owns: the in-driver application's packets and their return when a run ends.
Calls: domain (the driver), app (PacketLoop, AppHost), net (interfaces) -- downward.
"""

from __future__ import annotations

import time

import numpy as np

from redleaf.drivers.net import NetApp

from . import regs as R
from .app import AppHost, PacketLoop
from .domain import IxgbeNetDriver


class InDriverPktApp(IxgbeNetDriver, AppHost, NetApp):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.app_packets = int(ctx.config.get("app_packets", 2048))
        ctx.export(ctx.name, self, NetApp)

    def _app_net(self):
        return _OwnNet(self)

    def counters(self):
        s = self.core.stats()
        return s["rx_packets"], s["tx_packets"], s["rx_missed"], R.device_errors(self.bar)[0]

    def _app_done(self, loop: PacketLoop) -> None:
        """Free the application's packets once the rings gave them back."""
        deadline = time.monotonic() + 1.0
        while self.core.tx_in_flight() and time.monotonic() < deadline:
            self.dev_waker.wake()
            time.sleep(0.0005)
            self._reap_tx()
        self._reap_tx()
        loop.close()
        # the app's buffers still in the RX ring stay there as RX buffers; its sent
        # buffers are freed (other clients' stay queued for them)
        mine = np.isin(self.tx_done, loop.allocated)
        if mine.any():
            self.ops.free(self.tx_done[mine])
            self.tx_done = self.tx_done[~mine]


class _OwnNet:
    """The in-driver application's `Net`: the driver's own methods, without the
    one-client rule, and without deferring work to after an answer (nothing would
    run the bottom half before the application's next call)."""

    __slots__ = ("submit_and_poll", "poll")

    def __init__(self, drv: IxgbeNetDriver):
        self.submit_and_poll = drv._submit_and_poll
        self.poll = drv._poll
