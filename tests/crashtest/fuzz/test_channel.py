"""The channel fuzzer (crashtest/fuzz/channel.py): a caller writing garbage into its own
call channel (header words, lengths, sequence numbers, payloads) hurts only its own
calls: echo keeps its pid and an innocent caller of echo is served throughout."""

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import channel
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "100"))


@pytest.mark.parametrize("manifest", [channel.MANIFEST, channel.GROUPED_MANIFEST], ids=["process", "group"])
def test_garbage_in_ones_own_channel_hurts_no_one_else(make_instance, manifest):
    inst = make_instance(manifest)
    pids = {n: r["pid"] for n, r in inst.status().items()}
    tally = Tally("channel", 0)
    with inst.attach() as d:
        f = channel.ChannelFuzzer(d, inst, tally)

        # a seed, not st.randoms(): what an input does depends on the channel's state
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.integers(0, 2 ** 32 - 1))
        def one(seed):
            before = (tally.crashes, tally.unclear)
            f.one(random.Random(seed))
            assert (tally.crashes, tally.unclear) == before, tally.findings[-1]

        one()
    assert {n: r["pid"] for n, r in inst.status().items()} == pids
    assert inst.request("heap", check=True)["violations"] == []
    r = tally.result()
    assert r["refused"] > 0 and r["accepted"] > 0, r


def test_run_counts_its_inputs_and_finds_nothing():
    r = channel.run(100, seed=1)
    assert r["target"] == "channel" and r["inputs"] == 100
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 100 and r["errors"]
