"""The ixgbe fuzzers: hostile register and descriptor writes from a driver
(crashtest/fuzz/ixgbe_regs.py) and garbage frames from the wire
(crashtest/fuzz/frames.py) never raise out of the 82599 model, never DMA outside its
window, deliver only frames that were sent, and leave a NIC a fresh driver recovers."""

import glob
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import frames, ixgbe_regs
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "40"))  # a NIC and a driver per example
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))


@_SETTINGS
@given(st.randoms(use_true_random=False))
def test_a_misbehaving_driver_gets_device_errors_only(rng):
    tally = Tally("ixgbe-regs", 0)
    ixgbe_regs.one(rng, tally)
    assert tally.crashes == 0 and tally.unclear == 0, tally.findings


@pytest.mark.parametrize("wire", frames.WIRES)
def test_garbage_frames_on_each_wire(wire):
    @_SETTINGS
    @given(st.randoms(use_true_random=False))
    def one(rng):
        tally = Tally("frames", 0)
        frames.one(rng, tally, wire)
        assert tally.crashes == 0 and tally.unclear == 0, tally.findings

    before = set(glob.glob("/dev/shm/redleaf-fuzz-cable-*"))
    one()
    assert set(glob.glob("/dev/shm/redleaf-fuzz-cable-*")) == before   # every cable file removed


def test_the_guard_check_sees_a_dma_outside_the_window():
    rig = ixgbe_regs.Rig()
    assert rig.guards_intact()
    rig.dma_buf[ixgbe_regs.LO - 1] = 0
    assert not rig.guards_intact()


def test_frames_received_must_have_been_sent_in_order():
    assert frames._is_subsequence([b"a", b"c"], [b"a", b"b", b"c"])
    assert not frames._is_subsequence([b"c", b"a"], [b"a", b"b", b"c"])
    assert not frames._is_subsequence([b"x"], [b"a"])


@pytest.mark.parametrize("mod", [ixgbe_regs, frames])
def test_run_counts_its_inputs_and_finds_nothing(mod):
    r = mod.run(60, seed=5)
    assert r["inputs"] == 60 and r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 60 and r["refused"] > 0 and r["errors"]
