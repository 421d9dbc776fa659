"""The fscalls fuzzer (crashtest/fuzz/fscalls.py): hostile call sequences to the Rv6 fs
domain's methods return or raise FsError, never anything else, and leave a file
system fsck finds clean."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import fscalls
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False))
def test_hostile_calls_get_fs_errors_and_leave_a_clean_fs(rng):
    tally = Tally("fscalls", 0)
    fscalls.one(rng, tally)
    assert tally.crashes == 0 and tally.unclear == 0, tally.findings


def test_the_sequences_do_change_the_file_system():
    # not vacuous: some sequences are served whole, and the fs they leave differs
    import random
    dom, disk = fscalls.new_domain()
    before = dict(disk.blocks)
    rng, fds, done = random.Random(4), [], 0
    for _ in range(400):
        try:
            fscalls.call(rng, dom, fds)
            done += 1
        except fscalls.FsError:
            pass
    dom.fs.unmount()
    assert done > 50 and disk.blocks != before


def test_run_counts_its_inputs_and_finds_nothing():
    r = fscalls.run(300, seed=6)
    assert r["target"] == "fscalls" and r["inputs"] == 300
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 300 and r["errors"]
