"""The emulated 82599 as a device process (see domains/device_host.py).

Manifest:

    [[device]]
    name = "ixgbe0-dev"
    target = "redleaf.drivers.ixgbe.device:IxgbeDevice"
    config = { wire = "loopback" }     # loopback | pktgen | udp | shm | tap

Wire options: pktgen (`rate_pps`, `frame_size`), udp (`local_port`, `peer_port`; only
127.0.0.1), shm (`cable` path of a ShmCable file and `end` 0 or 1: two NICs in two
device processes cabled together), tap (`netns`, `ifname`, `addr`: a TAP device in a
network namespace the project creates).
"""

from __future__ import annotations

from . import wire as W
from .netns import NetNamespace
from .pktgen import PktGenWire
from .nic import Nic
from .regs import BAR_SIZE as _BAR_SIZE


def make_wire(config: dict):
    kind = config.get("wire", "loopback")
    if kind == "loopback":
        return W.LoopbackWire()
    if kind == "pktgen":
        rate = config.get("rate_pps")
        return PktGenWire(rate_pps=float(rate) if rate else None, frame_size=int(config.get("frame_size", 60)))
    if kind == "udp":
        return W.UdpWire(local_port=int(config.get("local_port", 0)), peer_port=config.get("peer_port"))
    if kind == "shm":
        return W.ShmWire(config["cable"], int(config.get("end", 0)))
    if kind == "tap":
        ns = NetNamespace(config.get("netns", "redleaf0"))
        try:
            return W.TapWire(ns, config.get("ifname", "rltap0"), config.get("addr", "10.77.0.1/24"),
                             own_netns=True)   # the namespace goes with the device
        except BaseException:
            ns.close()
            raise
    raise ValueError(f"unknown wire {kind!r}: use loopback, pktgen, udp, shm or tap")


class IxgbeDevice:
    BAR_SIZE = _BAR_SIZE
    QUIESCE = "redleaf.drivers.ixgbe.regs"

    def __init__(self, config: dict, bar, dma, dma_base: int, dma_limit: int):
        self.wire = make_wire(config)
        self.nic = Nic(bar, dma, dma_base, dma_limit, self.wire, batch=int(config.get("batch", 256)))

    def process(self) -> bool:
        return self.nic.process()

    def fileno(self):
        return self.wire.fileno()

    def next_deadline(self) -> float | None:
        return self.nic.next_deadline()

    def status(self) -> dict:
        return self.nic.status()

    def close(self) -> None:
        self.nic.close()
        self.wire.close()   # sockets, the TAP device and its namespace
