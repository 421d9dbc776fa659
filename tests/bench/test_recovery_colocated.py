"""`redleaf bench recovery --driver ixgbe --colocated`: the forwarder in its shadow's
group, the driver in a process of its own (issue #17).  A short crashing run: the
driver is killed, the forwarder sees no error and forwards again after each kill.
No figure is asserted on: timings belong in BENCHMARKS.md.  (The NVMe co-located pair
runs in tests/drivers/nvme/test_nvme_bench.py, beside the attached one.)"""

from __future__ import annotations

import pytest

from redleaf.bench import recovery_ixgbe, recovery_nvme
from redleaf.supervisor.manifest import parse_manifest


def _placement(text: str) -> dict:
    """Each domain's group, after `shadow = true` split the driver entry in two."""
    return {d.name: d.group for d in parse_manifest(text).domains}


def test_the_colocated_manifests_put_the_shadow_beside_its_client_and_the_driver_apart():
    assert _placement(recovery_ixgbe.manifest(True, colocated=True)) == {
        "app": "net", "ixgbe0": "net", "ixgbe0.driver": None}
    assert _placement(recovery_nvme.colo_manifest("/nonexistent.img", "16MiB")) == {
        "load": "io", "nvme0": "io", "nvme0.driver": None}
    with pytest.raises(ValueError, match="shadow"):
        recovery_ixgbe.manifest(False, colocated=True)


def test_a_colocated_shadow_hides_every_driver_kill_from_the_forwarder():
    calm, r = recovery_ixgbe._pair(True, 2.0, recovery_ixgbe.BATCH, colocated=True)
    assert 1 <= len(r["kills"]) <= 2  # half-way through each of its two turns (unless still restarting)
    assert calm["kills"] == [] and calm["errors"] == 0
    assert r["errors"] == 0
    assert r["mpps"] > 0
    assert len(r["recovery_ms"]) >= 1  # packets were forwarded after a kill
