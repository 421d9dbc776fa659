"""The invariant checks are pure functions of snapshots: tested on hand-made ones."""

from redleaf.crashtest import invariants as inv


def row(name, kind="domain", state="running", pid=10, id=3, reason=None):
    return {"name": name, "kind": kind, "state": state, "pid": pid, "id": id, "reason": reason}


ROWS = [row("echo", id=2), row("nvme0-dev", "device", id=3), row("nvme0.driver", id=4), row("nvme0", id=5),
        row("client-77", "client", id=6), row("rv6fs", state="backoff", pid=None, id=7)]


def test_targets_are_running_domains_and_devices_matching_a_glob_never_clients():
    assert inv.matching_targets(ROWS, "*") == ["echo", "nvme0", "nvme0-dev", "nvme0.driver"]
    assert inv.matching_targets(ROWS, "nvme0*") == ["nvme0", "nvme0-dev", "nvme0.driver"]
    assert inv.matching_targets(ROWS, "echo, nvme0.driver") == ["echo", "nvme0.driver"]
    assert inv.matching_targets(ROWS, "client-*") == []
    assert inv.matching_targets(ROWS, "rv6*") == []  # not running: not a target now


def test_settled_and_failed():
    assert not inv.settled(ROWS)  # rv6fs is in backoff
    done = [r for r in ROWS if r["name"] != "rv6fs"] + [row("rv6fs", state="failed", reason="5 exits in 10s")]
    assert inv.settled(done)
    assert inv.failed_entries(done) == ["rv6fs is failed (5 exits in 10s)"]
    assert inv.recovery_problems(done, "rv6fs") == ["rv6fs is failed after the fault, not running (5 exits in 10s)"]
    assert inv.recovery_problems(done, "echo") == []
    assert inv.recovery_problems(done, "ghost") == ["ghost is gone from the domain table after the fault"]


def test_heap_problems_name_objects_of_domains_that_are_not_alive():
    heap = {"violations": ["record 9 overlaps record 10"],
            "stats": {"domains": {"1": {"objects": 4, "bytes": 64}, "2": {"objects": 1, "bytes": 8},
                                  "7": {"objects": 0, "bytes": 0, "leased_bytes": 4096},
                                  "9": {"objects": 2, "bytes": 8192}}}}
    got = inv.heap_problems(heap, ROWS)
    assert got == ["heap check: record 9 overlaps record 10",
                   "2 heap object(s) (8192 bytes) owned by domain 9, which is not alive"]
    assert inv.heap_problems({"violations": [], "stats": {"domains": {"2": {"objects": 3}}}}, ROWS) == []


def test_deadline_and_leftover_problems():
    slow = [("Echo.inc", 12.0, 10.0), ("BDev.read", 50.0, 30.0)]
    assert inv.deadline_problems(slow, 5.0) == [
        "BDev.read took 50.0s, past its 30s deadline (+5s grace): a hung caller"]
    assert inv.leftover_problems(["/dev/shm/x.heap"]) == ["left behind after down: /dev/shm/x.heap"]
