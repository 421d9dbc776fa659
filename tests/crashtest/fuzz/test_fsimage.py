"""The fsimage fuzzer (crashtest/fuzz/fsimage.py): Rv6 images damaged by random bytes
or by hostile fields with their checksums recomputed give fsck a report with messages,
and mount a clear FsError or a file system whose use raises only FsError; no hang."""

import os
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import fsimage
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False))
def test_damaged_images_give_clear_errors(rng):
    tally = Tally("fsimage", 0)
    what, blocks = fsimage.damage(rng)
    fsimage.check(what, blocks, tally)
    assert tally.crashes == 0 and tally.unclear == 0, tally.findings


def test_every_region_and_both_kinds_of_damage_are_drawn():
    rng = random.Random(1)
    seen = {fsimage.damage(rng)[0].split(":")[0] for _ in range(300)}
    assert seen == set(fsimage.REGIONS)


def test_a_loop_that_does_not_end_is_reported_as_a_hang():
    with pytest.raises(fsimage.Hang):
        with fsimage.bounded(0.05):
            while True:
                time.sleep(0.001)


def test_run_counts_its_inputs_and_finds_nothing():
    r = fsimage.run(300, seed=9)
    assert r["target"] == "fsimage" and r["inputs"] == 300
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 300 and r["refused"] > 0 and r["errors"]
