"""A device process that dies is restarted by its policy, and its driver is unbound and
restarted with it (as a driver loses a surprise-removed card): with a shadow the clients
see nothing, and acknowledged data is all there; without one a call in flight fails with
DomainCrashed (the driver's death) rather than stalling on a controller that will never
answer, and the next call reaches the restarted driver. A device a
driver uses cannot be unloaded from under it."""

from __future__ import annotations

import os
import signal

import pytest

from redleaf.domains.errors import ControlError
from redleaf.drivers.bdev import BDev, Block
from redleaf.drivers.nvme.manifests import nvme_manifest


@pytest.fixture
def image(tmp_path):
    return str(tmp_path / "disk.img")


def _write(heap, bdev, block: int, byte: int) -> None:
    buf = heap.alloc(Block)
    buf.np["data"][:] = byte
    bdev.write(block, buf)
    bdev.flush()


def _read(heap, bdev, block: int) -> int:
    out = bdev.read(block, heap.alloc(Block))
    data = bytes(out.np["data"])
    assert len(set(data)) == 1
    return data[0]


def test_shadow_hides_a_device_death(make_instance, image):
    inst = make_instance(nvme_manifest(image, shadow=True))
    before = inst.status()
    with inst.attach() as d:
        bdev = d.lookup("nvme0", BDev)
        _write(d.heap, bdev, 3, 0x5A)
        os.kill(before["nvme0-dev"]["pid"], signal.SIGKILL)
        # the next calls simply work: the shadow waits out the driver's restart
        _write(d.heap, bdev, 4, 0x6B)
        assert _read(d.heap, bdev, 3) == 0x5A and _read(d.heap, bdev, 4) == 0x6B
    after = inst.status()
    assert after["nvme0-dev"]["restarts"] == before["nvme0-dev"]["restarts"] + 1
    assert after["nvme0.driver"]["restarts"] >= before["nvme0.driver"]["restarts"] + 1
    assert "its device nvme0-dev died" in open(inst.paths.log("supervisor")).read()


def test_without_a_shadow_the_client_is_told_at_once(make_instance, image):
    inst = make_instance(nvme_manifest(image))
    before = inst.status()
    with inst.attach() as d:
        bdev = d.lookup("nvme0", BDev)
        _write(d.heap, bdev, 1, 0x11)
        os.kill(before["nvme0-dev"]["pid"], signal.SIGKILL)
        # the driver is unbound and restarted with its device (never left programming a
        # controller that will not answer: that was a 10 s BlockError on every call)
        inst.wait_state("nvme0", "running", timeout=60, pid_not=before["nvme0"]["pid"])
        assert _read(d.heap, bdev, 1) == 0x11           # the proxy reaches the new driver
    after = inst.status()
    assert after["nvme0"]["restarts"] >= before["nvme0"]["restarts"] + 1   # +2 if it beat its device back


def test_a_device_in_use_cannot_be_unloaded(make_instance, image):
    inst = make_instance(nvme_manifest(image))
    with pytest.raises(ControlError, match="device nvme0-dev is used by nvme0; unload it first"):
        inst.request("unload", name="nvme0-dev")
    assert inst.status()["nvme0-dev"]["state"] == "running"
    inst.request("unload", name="nvme0")
    inst.request("unload", name="nvme0-dev")
    assert "nvme0-dev" not in inst.status()


def test_a_batch_wait_has_a_deadline():
    """BatchQueue.wait() polled for ever when nothing completed (a client blocked 200 s
    on a dead device): now it gives up with a BlockError that says what to do."""
    from redleaf.drivers.bdev import BlockError
    from redleaf.drivers.nvme.client import BatchQueue

    class Silent:             # a driver that accepts requests and never completes any
        def poll(self, col):
            return 0, col

    q = BatchQueue.__new__(BatchQueue)
    q.dev, q.inflight, q.col = Silent(), 3, None
    q._drain = lambda: []
    with pytest.raises(BlockError, match="3 request\\(s\\) still in flight after 0s"):
        q.wait(timeout_s=0.05)
    with pytest.raises(BlockError, match="still in flight"):
        q.wait_some(timeout_s=0.05)
