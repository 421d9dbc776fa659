"""The control fuzzer (crashtest/fuzz/control.py): malformed and unauthenticated frames
into a running instance's control endpoint are each refused clearly, the supervisor
answers after them, and no domain changes pid."""

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import control
from redleaf.crashtest.fuzz.tally import Tally

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "150"))


def test_hypothesis_inputs_are_refused_clearly(echo_instance):
    tally = Tally("control", 0)
    f = control.ControlFuzzer(echo_instance, tally)
    try:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(st.randoms(use_true_random=False))
        def one(rng):
            before = (tally.crashes, tally.unclear)
            f.send(*control.gen_input(rng, f.token))
            assert (tally.crashes, tally.unclear) == before, tally.findings[-1]

        one()
        assert f.check(heap=True) == []
    finally:
        f.close()
    r = tally.result()
    # the inputs reached the parser, the credential check and the handlers
    assert r["refused"] > 0 and r["accepted"] > 0, r
    assert {"ProtocolError", "AuthError"} <= set(r["kinds"]), r


def test_run_counts_its_inputs_and_finds_nothing():
    r = control.run(120, seed=7)
    assert r["target"] == "control" and r["inputs"] == 120
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 120 and r["errors"]


def test_a_run_is_reproducible():
    rng1, rng2 = random.Random(3), random.Random(3)
    assert [control.gen_input(rng1, b"t" * 32) for _ in range(50)] == \
        [control.gen_input(rng2, b"t" * 32) for _ in range(50)]

