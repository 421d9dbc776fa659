"""The deque fuzzer (crashtest/fuzz/deque.py): forged, stale, foreign and duplicated
entries in RRefDeque batches to the NVMe driver are refused (by the sender's batch API
or by the driver, with BlockError), blocks past the end complete with an error, and
the driver keeps its pid and holds nothing of the refused batches."""

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redleaf.crashtest.fuzz import deque
from redleaf.crashtest.fuzz.tally import Tally
from redleaf.drivers.nvme.manifests import nvme_manifest

EXAMPLES = int(os.environ.get("REDLEAF_FUZZ_EXAMPLES", "100"))


def test_malformed_batches_are_refused_and_the_driver_is_unharmed(make_instance, tmp_path):
    inst = make_instance(nvme_manifest(str(tmp_path / "nvme.img"), size=deque.IMAGE_SIZE, heap="32MiB"))
    row = inst.status()["nvme0"]
    tally = Tally("deque", 0)
    with inst.attach() as d:
        f = deque.DequeFuzzer(d, tally)

        # a seed, not st.randoms(): what an input does depends on the client's pool
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.integers(0, 2 ** 32 - 1))
        def one(seed):
            before = (tally.crashes, tally.unclear)
            f.one(random.Random(seed))
            assert (tally.crashes, tally.unclear) == before, tally.findings[-1]

        one()
        f.q.close()
    after = inst.status()["nvme0"]
    assert (after["pid"], after["heap_objects"]) == (row["pid"], row["heap_objects"])
    assert inst.request("heap", check=True)["violations"] == []
    r = tally.result()
    assert {"forged", "forged, refused at the sender", "good"} <= set(r["kinds"]), r


def test_run_counts_its_inputs_and_finds_nothing():
    r = deque.run(60, seed=2)
    assert r["target"] == "deque" and r["inputs"] == 60
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] + r["accepted"] == 60 and r["errors"]
