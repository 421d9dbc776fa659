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


def chan(cid, caller, callee, ends, fd_open=False, deferred=0, sweep_after=False):
    return {"id": cid, "caller": caller, "callee": callee, "ends": ends, "deferred": deferred,
            "sweep_after": sweep_after, "fd_open": fd_open}


def heap_with(channels, fds=0, maps=None, bells=(2, 3, 4, 5, 6), shm=None):
    hp = "/dev/shm/redleaf-0-t1.heap"
    return {"violations": [], "stats": {"domains": {}},
            "channels": {"channels": channels, "memfd_fds": fds,
                         "memfd_maps": len(channels) if maps is None else maps},
            "leftovers": {"bells": list(bells), "shm": [hp] if shm is None else shm, "heap_file": hp}}


def test_no_leaked_channel_on_a_sound_registry():
    # client 6 -> echo 2 open (its fd not yet let go), echo's old incarnation 9 died:
    # 6's end of that channel is torn down at its next call
    h = heap_with([chan(1, 6, 2, [2, 6], fd_open=True), chan(2, 6, 9, [6])], fds=1)
    assert inv.channel_problems(h, ROWS) == []
    assert inv.channel_problems(heap_with([]), ROWS) == []


def test_a_forged_leaked_channel_is_found():
    # an end of dead domain 9 kept, and a record with no end nobody will free
    h = heap_with([chan(1, 6, 9, [6, 9]), chan(2, 9, 2, [], deferred=2)])
    assert inv.channel_problems(h, ROWS) == [
        "channel 1 (6->9) still holds an end of domain 9, which is not alive",
        "channel 2 (9->2) has no end left but was not freed (2 deferred slot(s))"]


def test_channels_beyond_the_live_pairs_are_a_leak():
    many = [chan(i, 6, 2, [2, 6]) for i in range(1, 7)]
    got = inv.channel_problems(heap_with(many), ROWS, per_pair=4)
    assert got == ["6 channels from domain 6 to domain 2 (at most 4 expected): channels leak"]
    # channels to dead peers the live caller never closed: bounded by its possible peers
    live = {r["id"] for r in ROWS if r["state"] == "running"}
    stale = [chan(i, 6, 100 + i, [6]) for i in range(4 * (len(live) - 1) + 1)]
    got = inv.channel_problems(heap_with(stale), ROWS, per_pair=4)
    assert got == [f"domain 6 holds {len(stale)} channels to dead domains (at most {4 * (len(live) - 1)} "
                   f"expected while they are torn down): channels leak"]


def test_memfds_doorbells_and_shm_files_of_the_dead_are_leaks():
    h = heap_with([chan(1, 6, 2, [2, 6], fd_open=True)], fds=2, maps=3, bells=(2, 6, 9),
                  shm=["/dev/shm/redleaf-0-t1.heap", "/dev/shm/redleaf-0-t1.x"])
    assert inv.channel_problems(h, ROWS) == [
        "the supervisor holds 2 channel memfd(s) but its records account for 1: a segment's fd leaked",
        "the supervisor maps 3 channel segment(s) but has 1 channel(s): a freed channel's memory stays mapped",
        "the doorbell of domain 9 is still in the runtime directory, which is not alive",
        "/dev/shm/redleaf-0-t1.x in /dev/shm is not the instance's heap: a leaked shared-memory file"]
    assert inv.channel_problems({"violations": []}, ROWS) == [
        "heap --check did not report the channel registry (a supervisor without it cannot be checked)"]


def test_extra_clients_are_targets_only_when_named():
    assert inv.matching_targets(ROWS, "*", {"client-77"}) == ["client-77", "echo", "nvme0", "nvme0-dev",
                                                               "nvme0.driver"]
    assert inv.matching_targets(ROWS, "client-*", {"client-77"}) == ["client-77"]
    assert inv.matching_targets(ROWS, "client-*", {"client-5"}) == []  # not one of ours: the workload's own


def test_a_dead_clients_objects_and_channels_must_be_gone():
    heap = {"stats": {"domains": {"9": {"objects": 3, "bytes": 768}}},
            "channels": {"channels": [chan(4, 9, 2, [2, 9]), chan(5, 6, 2, [2, 6])]}}
    assert inv.dead_client_problems("client-40", 9, heap, ROWS) == [
        "3 heap object(s) (768 bytes) of client-40 (domain 9) survived its death",
        "channel 4 (9->2) still holds an end of client-40 (domain 9) after its death"]
    clean = {"stats": {"domains": {"9": {"objects": 0}}}, "channels": {"channels": [chan(5, 6, 2, [2, 6])]}}
    assert inv.dead_client_problems("client-40", 9, clean, ROWS) == []
    # the id went to a live domain meanwhile: not this check's business
    assert inv.dead_client_problems("client-40", 2, heap, ROWS) == []


def test_a_client_only_wave_leaves_every_domain_as_it_was():
    after = [dict(r) for r in ROWS]
    assert inv.bystander_problems(ROWS, after, {"client-77"}, {"client-77"}) == []
    after[0]["pid"] = 11  # echo restarted
    assert inv.bystander_problems(ROWS, after, {"client-77"}, {"client-77"}) == [
        "echo was disturbed by a fault of client-77 only (was running as pid 10, now running, pid 11)"]
    # a wave that also hit a domain may restart things: not judged here
    assert inv.bystander_problems(ROWS, after, {"client-77", "echo"}, {"client-77"}) == []


def test_stale_problems_after_the_next_up():
    procs = {100: "supervisor", 101: "echo"}
    old = {"/dev/shm/redleaf-0-t1.heap": 7, "/tmp/redleaf-0/t1/crashtest-marker-1-0": 9}
    clean = {"/dev/shm/redleaf-0-t1.heap": 8, "/tmp/redleaf-0/t1/crashtest-marker-1-0": None}
    assert inv.stale_problems(procs, [], old, clean) == []
    assert inv.stale_problems(procs, [101], old, {**clean, "/dev/shm/redleaf-0-t1.heap": 7}) == [
        "process 101 (echo) of the killed supervisor's instance is still running after the next `up`",
        "/dev/shm/redleaf-0-t1.heap of the killed supervisor's instance was not cleaned by the next `up` "
        "(same inode)"]


def test_a_process_mapping_more_segments_than_its_channels_keeps_freed_memory():
    heap = heap_with([chan(1, 6, 2, [2, 6]), chan(2, 3, 4, [3, 4])])
    # echo (pid 10 here hosts every row of ROWS: a group) holds ends of both channels
    assert inv.mapping_problems({10: 2}, ROWS, heap, slack=0) == []
    got = inv.mapping_problems({10: 3}, ROWS, heap, slack=0)
    assert len(got) == 1 and got[0].startswith("process 10 (") and \
        got[0].endswith("maps 3 channel segment(s) but holds ends of 2 channel(s): a freed channel's memory stays alive")
    # a slack allows that many extra mappings, and the campaign's is none
    assert inv.mapping_problems({10: 3}, ROWS, heap, slack=1) == []
    assert inv.mapping_problems({10: 4}, ROWS, heap, slack=1) != []
    assert inv.mapping_problems({10: 3}, ROWS, heap) != []
    assert inv.mapping_problems({99: 1}, ROWS, heap, slack=0) == [
        "process 99 (?) maps 1 channel segment(s) but holds ends of 0 channel(s): a freed channel's memory stays alive"]
