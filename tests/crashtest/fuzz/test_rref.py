"""The rref fuzzer (crashtest/fuzz/rref.py): forged, stale, out-of-range, foreign,
moved, dropped, mistyped and duplicated handles in calls to echo are each refused
clearly (by the callee for raw payloads, by the caller's proxy otherwise), the caller
keeps its objects, and echo keeps its pid."""

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import channel, rref
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "150"))


@pytest.mark.parametrize("grouped", [False, True], ids=["process", "group"])
def test_hypothesis_handles_are_refused_and_nothing_is_lost(make_instance, grouped):
    # grouped: echo shares a host process with another domain (isolation = "language")
    inst = make_instance(channel.GROUPED_MANIFEST if grouped else rref.MANIFEST)
    pid = inst.status()["echo"]["pid"]
    tally = Tally("rref", 0)
    with inst.attach() as d:
        f = rref.RRefFuzzer(d, tally, d.heap.n_records)

        # a seed, not st.randoms(): what an input draws depends on the fuzzer's state
        # (its pool of handles), which hypothesis's replay must not see change
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.integers(0, 2 ** 32 - 1))
        def one(seed):
            before = (tally.crashes, tally.unclear)
            f.one(random.Random(seed))
            assert (tally.crashes, tally.unclear) == before, tally.findings[-1]

        one()
    r = tally.result()
    assert r["refused"] > 0 and r["accepted"] > 0 and {"raw", "proxy"} <= set(r["kinds"]), r
    assert inst.status()["echo"]["pid"] == pid
    assert inst.request("heap", check=True)["violations"] == []


def test_run_counts_its_inputs_and_finds_nothing():
    r = rref.run(300, seed=11)
    assert r["target"] == "rref" and r["inputs"] == 300
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 300 and r["errors"]
