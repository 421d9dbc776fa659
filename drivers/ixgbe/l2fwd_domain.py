"""An ixy-fwd style forwarder as a domain, using a `Net` across a domain boundary.

Manifest:

    [[domain]]
    name = "l2fwd"
    target = "redleaf.drivers.ixgbe.l2fwd_domain:L2Fwd"
    uses = { net = "ixgbe0" }
    config = { autostart = true, batch = 32, packets = 2048 }

With `autostart` it forwards from the moment it boots (receive a batch, touch a byte,
swap the MACs, send it back out of the same port) while serving calls; otherwise it
waits for `NetApp.run_app` (what the benchmarks use).

A driver crash without a shadow reaches this domain as DomainCrashed (or
DomainUnavailable while the driver restarts): the buffers the driver held are gone
with it, so the forwarder counts the error, allocates replacements, and carries on
once the driver is back.  Behind a shadow it never sees an error.
"""

from __future__ import annotations

import time

from redleaf.domains.errors import DomainCrashed, DomainUnavailable, RpcTimeout
from redleaf.drivers.net import Net, NetApp, NetError, PacketOps

from .app import AppHost, PacketLoop

RECOVERABLE = (DomainCrashed, DomainUnavailable, RpcTimeout)


class L2Fwd(AppHost, NetApp):
    def __init__(self, ctx):
        self.ctx = ctx
        cfg = ctx.config
        self.ops = PacketOps(ctx.heap)
        self.net = ctx.use("net", Net)
        self.app_packets = int(cfg.get("packets", 2048))
        self.batch = int(cfg.get("batch", 32))
        self.autostart = bool(cfg.get("autostart", False))
        self.loop: PacketLoop | None = None
        self.errors = 0
        self.lost_buffers = 0
        ctx.export(ctx.name, self, NetApp)

    # -- AppHost hooks ------------------------------------------------------------------
    def _app_net(self):
        return self.net

    def _app_on_error(self, loop: PacketLoop):
        def on_error(e: Exception) -> None:
            if not isinstance(e, RECOVERABLE):
                raise e
            self.errors += 1
            self._app_errors += 1
            self.lost_buffers += loop.replenish()
            time.sleep(0.002)  # the driver is restarting; don't spin on the supervisor
        return on_error

    def counters(self):
        lp = self.loop
        if lp is None:
            return 0, 0, 0, self.errors
        return lp.received, lp.sent, lp.dropped, self.errors

    # -- the domain's main loop -----------------------------------------------------------
    def run(self) -> None:
        """With autostart: forward forever, serving calls between batches."""
        rt = self.ctx.rt
        if not self.autostart:
            rt.run_forever()
            return
        self.loop = lp = PacketLoop(self.ops, self.net, self.app_packets, self.batch)
        on_error = self._app_on_error(lp)
        idle = beat = 0
        while not rt.stop:
            try:
                k = lp.fwd_step()
            except NetError:
                k = 0
                time.sleep(0.001)
            except Exception as e:
                on_error(e)
                k = 0
            beat += 1
            if rt.inbound:
                rt.serve_pending()
            if beat & 0xFF == 0 or not k:
                rt.beat()   # heartbeat: the watchdog must see this loop move
                rt.handle_pushes()
            if k:
                idle = 0
            else:
                idle += 1
                if idle > 64:
                    time.sleep(0.0002)
        lp.close()
