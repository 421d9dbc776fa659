"""The emulated NVMe controller as a device process (see domains/device_host.py).

Manifest:

    [[device]]
    name = "nvme0-dev"
    target = "redleaf.drivers.nvme.device:NvmeDevice"
    config = { image = "nvme0.img", size = "64MiB", sync = "fdatasync" }

The image is created (sparse) at `size` if absent and never truncated; a relative
path is relative to the directory `redleaf up` ran in.  Flush makes written data
durable (fdatasync).
"""

from __future__ import annotations

import os

from .controller import NvmeController
from .regs import BAR_SIZE as _BAR_SIZE
from .store import FileBlockStore


def _size(v) -> int:
    from redleaf.domains.units import parse_size

    return parse_size(v, "nvme device config size")


class NvmeDevice:
    BAR_SIZE = _BAR_SIZE
    QUIESCE = "redleaf.drivers.nvme.regs"

    def __init__(self, config: dict, bar, dma, dma_base: int, dma_limit: int):
        image = os.path.abspath(config.get("image", "nvme0.img"))
        self.store = FileBlockStore(image, size=_size(config.get("size", "64MiB")),
                                    sync=config.get("sync", "fdatasync"))
        self.ctrl = NvmeController(bar, dma, dma_base, dma_limit, self.store,
                                   max_queues=int(config.get("max_queues", 4)),
                                   mqes=int(config.get("mqes", 1024)))
        print(f"nvme: image {image}, {self.store.size >> 20} MiB", flush=True)

    def process(self) -> bool:
        return self.ctrl.process()

    def fileno(self):
        return None

    def next_deadline(self) -> float | None:
        return self.ctrl.next_deadline()

    def status(self) -> dict:
        return dict(self.ctrl.stats)

    def close(self) -> None:
        self.store.close()
