"""The nvme-regs fuzzer (crashtest/fuzz/nvme_regs.py): hostile register, doorbell and
command writes from a driver never raise out of the NVMe model, never DMA outside its
window, and always leave a device a fresh driver can bring back."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import nvme_regs
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "100"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False))
def test_a_misbehaving_driver_gets_device_errors_only(rng):
    tally = Tally("nvme-regs", 0)
    nvme_regs.one(rng, tally)
    assert tally.crashes == 0 and tally.unclear == 0, tally.findings


def test_the_guard_check_sees_a_dma_outside_the_window():
    rig = nvme_regs.Rig()
    assert rig.guards_intact()
    rig.dma_buf[nvme_regs.DMA_LIMIT + 5] = 0
    assert not rig.guards_intact()


def test_run_counts_its_inputs_and_finds_nothing():
    r = nvme_regs.run(100, seed=4)
    assert r["target"] == "nvme-regs" and r["inputs"] == 100
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 100 and r["refused"] > 0 and r["errors"]
