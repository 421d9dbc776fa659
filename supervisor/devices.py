"""Device binding and quiesce: which driver programs which emulated device, and
stopping a device's DMA before a dead driver's memory is reclaimed.

Owns: the device records' shells as the supervisor writes them (driver id, bind
counter, bus-master enable, quiesce token; layout in domains/device_host.py) and the
quiesces in progress.  Calls the heap mapping, the table (read), the channels'
doorbell ring and the loop's timers.  It never imports driver code: every device
is quiesced through the same fixed shell fields, and the device host does the
device-specific part in its own process.

A quiesce is a state, not a wait: `quiesce(driver, done)` posts the request to each
bound device and returns; a timer checks the acknowledgements and calls done() once
all have answered or the deadline has passed (then the memory is reclaimed anyway,
as a kernel would after a function-reset timeout, and the log says so).
"""

from __future__ import annotations

import logging
import struct
import time

from redleaf.domains.device_host import SHELL_BINDS, SHELL_BME, SHELL_DRIVER, SHELL_QACK, SHELL_QREQ, SHELL_SIZE

from .table import RUNNING, Refusal

QUIESCE_DEADLINE_S = 0.5
QUIESCE_POLL_S = 0.001
_U32 = struct.Struct("<I")

log = logging.getLogger("redleaf.supervisor")


class Devices:
    def __init__(self, table, heap_mem, loop, ring):
        self.table = table
        self.mem = heap_mem
        self.loop = loop
        self.ring = ring

    def check_ready(self, dev: dict) -> dict:
        """Validate a device's ready message; the BAR and the shell lie inside the heap."""
        if not (isinstance(dev, dict) and all(isinstance(dev.get(k), int) for k in ("bar", "bar_size", "shell"))):
            raise Refusal("BadRequest", "a device's ready message must describe its BAR and shell")
        size = len(self.mem)
        if not (0 <= dev["bar"] and dev["bar_size"] > 0 and dev["bar"] + dev["bar_size"] <= size
                and 0 <= dev["shell"] and dev["shell"] + SHELL_SIZE <= size):
            raise Refusal("BadRequest", "a device's BAR and shell must lie inside the exchange heap")
        return {k: dev[k] for k in ("bar", "bar_size", "shell")}

    def _shell(self, dev) -> memoryview:
        off = dev.device["shell"]
        return self.mem[off:off + SHELL_SIZE]

    def bind(self, drv, dev) -> dict:
        """A driver claims a device: it learns where the BAR is; the device learns whom
        to interrupt; the supervisor learns what to quiesce if the driver dies."""
        if dev.state != RUNNING or dev.device is None:
            raise Refusal("DomainUnavailable", f"device {dev.name} is {dev.state}")
        for other in self.table.by_id.values():
            if other is not drv and dev.name in other.bound_devices:
                raise Refusal("Conflict", f"device {dev.name} is already driven by {other.name}")
        if dev.name not in drv.bound_devices:
            drv.bound_devices.append(dev.name)
        shell = self._shell(dev)
        # the driver's id, and a bind counter that tells the device host to re-open
        # the driver's doorbell (the id may be a reused one, with a new FIFO)
        _U32.pack_into(shell, SHELL_BINDS, (_U32.unpack_from(shell, SHELL_BINDS)[0] + 1) & 0xFFFFFFFF)
        _U32.pack_into(shell, SHELL_DRIVER, drv.id)
        _U32.pack_into(shell, SHELL_BME, 1)
        return dict(dev.device, device_id=dev.id)

    def quiesce(self, drv, done) -> None:
        """Stop the DMA of every device `drv` programs, then call done()."""
        posted = []
        for name in drv.bound_devices:
            dev = self.table.entries.get(name)
            if dev is None or dev.device is None or not dev.alive:
                continue
            shell = self._shell(dev)
            _U32.pack_into(shell, SHELL_DRIVER, 0)
            _U32.pack_into(shell, SHELL_BME, 0)  # before the token: the host reads them the other way round
            token = (_U32.unpack_from(shell, SHELL_QREQ)[0] + 1) & 0xFFFFFFFF or 1
            _U32.pack_into(shell, SHELL_QREQ, token)
            self.ring(dev.id)
            posted.append((dev, shell, token))
        drv.bound_devices = []
        if not posted:
            done()
            return
        self._check(posted, time.monotonic() + QUIESCE_DEADLINE_S, done)

    def _check(self, posted: list, deadline: float, done) -> None:
        waiting = []
        for dev, shell, token in posted:
            if not dev.alive:
                continue  # a dead device does no DMA
            if _U32.unpack_from(shell, SHELL_QACK)[0] != token:
                waiting.append((dev, shell, token))
        if not waiting:
            done()
            return
        if time.monotonic() > deadline:
            log.error("device(s) %s did not acknowledge quiesce within %.1fs; reclaiming anyway",
                      ", ".join(d.name for d, _s, _t in waiting), QUIESCE_DEADLINE_S)
            done()
            return
        for dev, _s, _t in waiting:
            self.ring(dev.id)
        self.loop.after(QUIESCE_POLL_S, self._check, waiting, deadline, done)
