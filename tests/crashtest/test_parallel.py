"""The pure parts of `--parallel` and of the fleet workload: how the count is
split, what a child is told, how summaries merge, and which errors the fleet
expects given what a wave hit."""

import argparse

from redleaf.crashtest import parallel
from redleaf.crashtest.workloads.fleet import FleetWorkload


def test_shares_split_the_count_evenly_and_exactly():
    assert parallel.shares(100_000, 3) == [33_334, 33_333, 33_333]
    assert parallel.shares(2, 3) == [1, 1, 0]
    for total in range(0, 50):
        for n in range(1, 6):
            s = parallel.shares(total, n)
            assert sum(s) == total and max(s) - min(s) <= 1


def test_a_child_gets_the_resolved_options_and_its_own_seed_count_and_report():
    args = argparse.Namespace(workload="fleet", targets=None, faults="sigkill,stop", schedule="simultaneous",
                              rate=100.0, duration=None, stall_s=None)
    argv = parallel.child_argv(args, 7, 500, "/tmp/x/seed-7")
    assert argv[:2] == ["--workload", "fleet"]
    for flag, v in (("--seed", "7"), ("--count", "500"), ("--report", "/tmp/x/seed-7"), ("--faults", "sigkill,stop"),
                    ("--schedule", "simultaneous"), ("--rate", "100.0")):
        assert argv[argv.index(flag) + 1] == v
    assert "--targets" not in argv and "--parallel" not in argv and "--json" not in argv


def _summary(seed, recs, violations=()):
    log = [{"index": i, "wave": i, "kind": k, "target": t, "how": how, "fired_at": float(i), "recovered_s": r,
            "restarted": r is not None} for i, (k, t, how, r) in enumerate(recs)]
    fired = [x for x in log if not x["how"].startswith("skipped")]
    return {"options": {"seed": seed, "workload": "fleet", "schedule": "simultaneous", "faults": ["sigkill"],
                        "targets": "echo*", "replay": None, "stall_s": 2.0, "count": len(recs)},
            "instance": f"t{seed}", "booted": True, "elapsed_s": 10.0 + seed,
            "faults": {"planned": len(recs), "fired": len(fired), "not_fired": 0, "skipped": len(recs) - len(fired),
                       "by_kind": {"sigkill": len(fired)}, "by_target": {"echo0": len(fired)}},
            "recoveries": {"restarted": len(fired), "survived": 0, "not_recovered": 0},
            "time_to_recovery_s": {}, "calls": 100 * (seed + 1),
            "client_errors": {"expected": 2, "unexpected": 0, "by_kind": {"DomainCrashed (expected)": 2},
                              "unexpected_first": []},
            "violations": list(violations), "fault_log": log,
            "throughput": {"bucket_s": 0.1, "buckets": {"0": 5, "1": 6}}}


def test_summaries_merge_into_one_report_that_keeps_each_violations_seed():
    v = {"seed": 1, "fault": 1, "kind": "sigkill", "target": "echo0", "what": "x", "wave": [1],
         "replay": "--seed 1 --replay 1"}
    a = _summary(0, [("sigkill", "echo0", "kill", 0.1), ("sigkill", "echo0", "skipped: gone", None)])
    b = _summary(1, [("sigkill", "echo0", "kill", 0.3), ("sigkill", "echo0", "kill", 0.2)], [v])
    m = parallel.merge([a, b], 2)
    assert m["options"]["parallel"] == 2 and m["options"]["seeds"] == [0, 1]
    assert m["faults"]["planned"] == 4 and m["faults"]["fired"] == 3 and m["faults"]["skipped"] == 1
    assert m["faults"]["by_kind"] == {"sigkill": 3}
    assert m["time_to_recovery_s"]["count"] == 3 and m["time_to_recovery_s"]["median"] == 0.2
    assert m["time_to_recovery_s"]["max"] == 0.3
    assert m["calls"] == 300 and m["client_errors"]["expected"] == 4
    assert m["violations"] == [v]
    assert m["throughput"]["buckets"] == {"0": 10, "1": 12}
    assert {f["seed"] for f in m["fault_log"]} == {0, 1}


def test_the_fleet_expects_outages_only_from_the_process_that_was_hit():
    w = FleetWorkload("/nonexistent")
    assert w.expected("DomainCrashed", {"echo0"}, "echo0.checksum")
    assert not w.expected("DomainCrashed", {"echo0"}, "echo1.checksum")  # an innocent process
    assert w.expected("DomainUnavailable", {"echo2"}, "echo3.inc")  # the group shares a process
    assert not w.expected("DomainUnavailable", {"echo1"}, "echo3.inc")
    assert not w.expected("ValueError", {"echo0"}, "echo0.inc")  # never a non-outage error
