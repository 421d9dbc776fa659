"""The pure parts of the ixgbe benchmarks: their manifests and the recovery-time
measure (the benchmarks themselves run by `redleaf bench`, never timed in tests)."""

from __future__ import annotations

import numpy as np
import pytest

from redleaf.bench import ixgbe, recovery_ixgbe
from redleaf.supervisor.manifest import parse_manifest


@pytest.mark.parametrize("text", [ixgbe.manifest("plain"), ixgbe.manifest("shadow"), ixgbe.manifest("nullnet"),
                                  recovery_ixgbe.manifest(True), recovery_ixgbe.manifest(False)])
def test_benchmark_manifests_parse(text):
    m = parse_manifest(text)
    names = {d.name for d in m.domains}
    assert "app" in names
    assert all(d.target.startswith("redleaf.drivers.ixgbe.") for d in m.domains + m.devices)


def test_recovery_time_is_kill_to_first_packet_after_the_death():
    ms = 1_000_000
    bins = np.zeros(100, dtype=np.int32)
    bins[:10] = 5        # traffic, then the kill at 10 ms (answered at 11 ms)
    bins[11] = 3         # a step that finished while the kill was being delivered
    bins[40:] = 5        # the restarted driver forwards from 40 ms on
    assert recovery_ixgbe.recovery_times_ms([(10 * ms, 11 * ms)], 0, ms, bins) == [30.0]
    # a kill with no traffic after it gives no figure rather than a wrong one
    assert recovery_ixgbe.recovery_times_ms([(10 * ms, 11 * ms)], 0, ms, bins[:30]) == []


def test_only_the_in_driver_configuration_runs_the_benchmark_app_in_the_driver_domain():
    targets = {c: {d.name: d.target for d in parse_manifest(ixgbe.manifest(c)).domains}
               for c in ("plain", "shadow")}
    assert targets["plain"]["ixgbe0"] == "redleaf.drivers.ixgbe.pktapp:InDriverPktApp"
    assert targets["shadow"]["ixgbe0.driver"] == "redleaf.drivers.ixgbe.domain:IxgbeNetDriver"
