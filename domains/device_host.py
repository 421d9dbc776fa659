"""The process an emulated device runs in: hardware, not a domain.

A device is spawned by the supervisor from the manifest's `[[device]]` entries and is
not restarted when its driver crashes; a restarted driver must reset and
re-initialise it, as with a real card.  The host maps the exchange heap (DMA
addresses are heap offsets), allocates the device's BAR in it, and runs the pure
device model: `process()` whenever there may be work, spinning briefly after
activity and then sleeping on its doorbell (rung by the driver after a doorbell
register write) or on its wire's file descriptor.  When the model reports that it
posted completions, the host wakes the bound driver: that is the interrupt.

Bus mastering is the host's, not the model's, as the PCI function is a slot's: the
host keeps a *shell* (SHELL_SIZE bytes in the heap, its layout below) with a
bus-master-enable flag and a quiesce request/acknowledge token pair at fixed
offsets, the same for every device.  To stop a device's DMA (its driver died and
the driver's memory is about to be reclaimed) the supervisor clears SHELL_BME,
then writes a new token into SHELL_QREQ and rings the device; the host, between two
`process()` calls (so no DMA is half done), applies the model's own quiesce and then
echoes the token into SHELL_QACK.  The supervisor reads SHELL_QACK and never imports
driver code.  Binding a driver sets SHELL_BME again; the model itself stays
quiesced until the new driver resets it and sets its own bus-master bit.

Owns: the device process's loop.  Calls domains.host (connect, import), the
runtime, and the device class named in the spec (including its QUIESCE module).

A device class looks like:

    class SomeDevice:
        BAR_SIZE: int
        QUIESCE = "redleaf.drivers.x.regs"        # module with quiesce_request / quiesce_acked,
                                                   # run here, in the device process
        def __init__(self, config, bar, dma, dma_base, dma_limit): ...
        def process(self) -> bool: ...    # True if it completed something
        def fileno(self) -> int | None: ...
        def status(self) -> dict: ...
        def close(self): ...
"""

from __future__ import annotations

import os
import signal
import struct
import time

import numpy as np

SHELL_SIZE = 64
SHELL_DRIVER = 0  # u32: domain id of the bound driver, written by the supervisor
SHELL_BINDS = 4  # u32: bumped by the supervisor on every bind (the id may be reused)
SHELL_BME = 8  # u32: bus master enable, 1 while a driver is bound (supervisor writes)
SHELL_QREQ = 12  # u32: quiesce request token (supervisor writes, after clearing SHELL_BME)
SHELL_QACK = 16  # u32: quiesce acknowledge: the token, once the device does no DMA (host writes)
#: how long the host pumps its model for the model's own quiesce acknowledgement
QUIESCE_PUMP_S = 0.4
#: polling (yielding) this long after the last work, then sleep: longer than the gap
#: between a busy driver's batches, so a device under load never pays a wake-up
SPIN_NS = 1_000_000
sched_yield = os.sched_yield
IDLE_SLEEP_MS = 20  # for a model that cannot say when it next needs a call (no next_deadline)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass
_U32 = struct.Struct("<I")


def _quiesce(dev, bar, qmod, name: str) -> None:
    """Stop the model's DMA: its own bus-master bit off, then run it until it says so."""
    token = qmod.quiesce_request(bar)
    deadline = time.monotonic() + QUIESCE_PUMP_S
    while not qmod.quiesce_acked(bar, token):
        if time.monotonic() > deadline:
            print(f"redleaf: device {name} did not quiesce within {QUIESCE_PUMP_S}s", flush=True)
            return
        try:
            dev.process()
        except Exception:
            import traceback

            traceback.print_exc()


def main(spec: dict) -> int:
    import importlib

    from .host import connect_runtime, import_target

    stop = []
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)  # SIGTERM ends an untimed select (PEP 475 would retry it)
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rt = connect_runtime(spec)
    name = spec["name"]
    try:
        cls = import_target(spec["target"], spec.get("path"))
        shell_ref = rt.heap.alloc_vec(np.uint8, SHELL_SIZE)
        bar_ref = rt.heap.alloc_vec(np.uint8, cls.BAR_SIZE)
        shell = shell_ref.buf
        shell[:] = bytes(SHELL_SIZE)
        bar = bar_ref.buf
        bar[:] = bytes(len(bar))
        base, limit = rt.heap.dma_window()
        dev = cls(spec.get("config") or {}, bar, rt.mem, base, limit)
        qmod = importlib.import_module(cls.QUIESCE)
    except BaseException as e:
        import traceback

        traceback.print_exc()
        rt.ctl.request("init_failed", error=f"{type(e).__name__}: {e}"[:500], timeout_s=2.0)
        return 78
    info = {"bar": bar_ref.offset, "bar_size": len(bar), "shell": shell_ref.offset, "device_id": rt.domain_id}
    rt.ctl.request("ready", exports=[], device=info)
    print(f"redleaf: device {name} ({spec['target']}) ready, BAR at heap offset {bar_ref.offset:#x}", flush=True)
    waker = None  # the bound driver's doorbell
    seen_binds = 0
    fd = dev.fileno()
    import select

    area = rt.area
    from redleaf.domains.doorbell import RA_SLEEPING, fence

    now = time.monotonic_ns
    last_work = now()
    beat = 0
    seen_qreq = 0
    while not stop:
        # token first, then BME: the supervisor writes them in the opposite order
        qreq = _U32.unpack_from(shell, SHELL_QREQ)[0]
        if qreq != seen_qreq:
            seen_qreq = qreq
            if not _U32.unpack_from(shell, SHELL_BME)[0]:
                _quiesce(dev, bar, qmod, name)
            _U32.pack_into(shell, SHELL_QACK, qreq)
        worked = False
        try:
            worked = dev.process()
        except Exception:  # a device model bug must be visible, but hardware does not crash
            import traceback

            traceback.print_exc()
            time.sleep(0.01)
        if worked:
            last_work = now()
            binds = _U32.unpack_from(shell, SHELL_BINDS)[0]
            if binds != seen_binds:  # a (re)bound driver, whose id may be a reused one
                seen_binds = binds
                waker = None
            drv = _U32.unpack_from(shell, SHELL_DRIVER)[0]
            try:
                if waker is None and drv:
                    waker = rt.waker_for(drv)
                    waker.refresh()  # the doorbell now at the path, not a dead one's
                if waker is not None:
                    waker.wake()  # the interrupt
            except OSError:
                waker = None  # the driver is gone; the next bind brings its successor
            continue
        beat += 1
        if beat & 0xFF == 0:
            rt.beat()
            rt.handle_pushes()
        if now() - last_work < SPIN_NS:
            sched_yield()  # see domains.runtime.SPIN_NS
            continue
        area[RA_SLEEPING] = 1
        fence()
        try:
            if dev.process():
                last_work = now()
                continue
            rt.beat()
            # The control socket's fd is edge-triggered: take what is queued now, or a
            # push that arrived meanwhile would never make it readable again.
            rt.handle_pushes()
            # No timer unless the model needs one (a link coming up, frames arriving
            # without making an fd readable): the doorbell (drivers' doorbell writes,
            # the supervisor's quiesce and binds), the wire's fd, the control socket
            # and signals wake it. An idle device costs nothing.
            due = dev.next_deadline() if hasattr(dev, "next_deadline") else IDLE_SLEEP_MS / 1000
            fds = [rt.bell.fd, rt._ctl_fd, rfd] + ([fd] if fd is not None else [])
            ready, _w, _x = select.select(fds, [], [], due)
        finally:
            area[RA_SLEEPING] = 0
        rt.bell.drain()
        _drain(rfd)
        rt.handle_pushes()
        if ready:
            last_work = now()  # woken for work: spin again; after a timeout, straight back to process()
    dev.close()
    rt.close()
    return 0
