"""Calls, ownership and faults between two domains, in both placements (issue #17).

Each test runs twice (`placed`, tests/domains/conftest.py): the caller is a probe
domain (tests/domains/placed_probe.py) either in its own process, calling Echo over
a channel, or in Echo's group, calling it through the co-located transport.  The
facts are the same in both, except where a placement changes what a fault hits (a
kill -9 of the caller takes its whole group down): there the test says which.

These were attached-client tests (test_calls, test_arg_moves, test_bad_calls,
test_call_errors); what is specific to an attached client or to a channel stays
there."""

from __future__ import annotations

import threading
import time

import msgpack

from redleaf.domains import DomainCrashed
from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.interface import spec_of
from redleaf.domains.marshal import rref_wire
from tests.conftest import wait_busy


def _index(name: str) -> int:
    return next(m.index for m in spec_of(Echo).by_index if m.name == name)


def _req(method: str, args: list) -> bytes:
    return msgpack.packb([_index(method), args])


def _objects(inst, name: str) -> int:
    return inst.status()[name]["heap_objects"]


def _live(inst) -> tuple:
    st = inst.request("heap", check=False)["stats"]
    return st["objects"], st["live_bytes"]


def _sound(inst) -> None:
    assert inst.request("heap", check=True)["violations"] == []


def _untouched(inst, before: dict) -> None:
    """Neither domain faulted: same incarnations as in `before`."""
    now = inst.status()
    for name in ("echo", "probe"):
        assert now[name]["id"] == before[name]["id"] and now[name]["restarts"] == 0, (name, now[name])


def _wait_restarted(inst, name: str, old_id: int, timeout: float = 30.0) -> dict:
    """Status once `name` runs as an incarnation other than `old_id`."""
    deadline = time.monotonic() + timeout
    while True:
        st = inst.status()
        if st[name]["id"] != old_id and st[name]["state"] == "running":
            return st
        assert time.monotonic() < deadline, f"{name} was not restarted: {st[name]}"
        time.sleep(0.01)


def test_values_declared_errors_and_bad_arguments(placed):
    inst = placed.inst
    before = inst.status()
    with placed.probe() as p:
        assert p.values() == (True, 42, b"abc", "world")
        assert p.declared("missing") == "NotFound: missing"  # the declared type and its message
        made = p.calls_made()
        errs = p.bad_args()
        # refused by the caller's own proxy, before anything was sent ...
        assert errs[0].startswith("BadArgument") and "expected int" in errs[0], errs[0]
        assert errs[1].startswith("BadArgument") and "takes 1 argument" in errs[1], errs[1]
        assert errs[2].startswith("BadArgument") and "inline limit" in errs[2], errs[2]
        assert errs[3].startswith("BadArgument") and "range" in errs[3], errs[3]
        # ... and a return value msgpack cannot carry (2**64) is the caller's error too
        assert errs[4].startswith("BadArgument") and "inc() returned" in errs[4], errs[4]
        assert p.calls_made() == made + 1  # only the last one was sent
        assert p.values()[1] == 42
    _untouched(inst, before)


def test_rref_moves_borrows_and_comes_back(placed):
    inst = placed.inst
    before = inst.status()
    with placed.probe() as p:
        me, echo_id = p.ids()
        assert me != echo_id
        dead, total, lent, owner, still, filled = p.rref(4096, 7)
        assert dead.startswith("OwnershipError"), dead  # moved away: the old handle is dead
        assert total == lent == 7 * 4096
        assert owner == me and still == 1  # came back ours, and still ours after the borrow
        assert filled == 300  # a vector the callee allocated, moved to the caller
        err, is_ownership, is_rpc = p.use_after_move()
        assert is_ownership and is_rpc and "dead" in err, err  # `except RpcError` catches it
        # a stress of the publish order: thousands of moves, each checked
        assert p.roundtrips(5000) == 5000
        assert _objects(inst, "echo") == 0
        # heap exhaustion in the callee reaches the caller; the callee still serves
        err = p.fill(64 << 20, 1)  # the heap is 32 MiB
        assert err.startswith("CallHeapExhausted") and "fill" in err, err
        assert p.fill(1024, 2) == "sum 2048"
    _untouched(inst, before)
    _sound(inst)


def test_foreign_forged_stale_and_duplicated_handles_are_refused(placed):
    """A request naming an object the caller does not own at the moment of the call
    (the callee's own, a third party's, a stale or forged handle, one object twice)
    is refused whole with OwnershipError; the callee survives and every object of the
    call stays where it was."""
    inst = placed.inst
    # a third party, in a process of its own in both placements
    inst.request("load", name="echo2", target="redleaf.domains.builtin.echo:EchoDomain", restart="permanent",
                 config={}, uses=[], shadow=False)
    inst.wait_state("echo2", "running", timeout=30)
    before = inst.status()
    with placed.probe() as p:
        me, echo_id = p.ids()

        # the callee's own object (BDev.read once handed a driver's buffer to its client)
        s, g = p.vec(128, 3)
        assert p.give("echo", s) == 1
        kind, resp = p.raw("echo", _req("roundtrip", [rref_wire(s, g)]))
        assert kind == chan.REJECTED and b"OwnershipError" in resp and b"not by the caller" in resp, resp
        assert _objects(inst, "echo") == 1 and p.kept_sum("echo") == 3 * 128 and p.owner(s) == echo_id

        # a third party's object
        s, g = p.vec(64, 5)
        p.give("echo2", s)
        kind, resp = p.raw("echo", _req("roundtrip", [rref_wire(s, g)]))
        assert kind == chan.REJECTED and b"OwnershipError" in resp, resp
        assert _objects(inst, "echo") == 1 and _objects(inst, "echo2") == 1
        assert p.kept_sum("echo2") == 5 * 64

        # one wire in two moved arguments (a driver once freed such an object twice)
        s, g = p.vec(32, 7)
        kind, resp = p.raw("echo", _req("pair_vecs", [rref_wire(s, g), rref_wire(s, g)]))
        assert kind == chan.REJECTED and b"named twice" in resp, resp
        assert p.own(s) == (True, 7 * 32, me)  # still ours: usable and owned
        s2, _g2 = p.vec(8, 0)
        assert p.pair_vecs(s, s2) == "value 40"  # a proper call still works

        # a refused call leaves every other moved argument with the caller (a batch of
        # this attack once leaked 80 objects into the callee)
        live = _live(inst)
        goods = []
        for i in range(40):
            s, g = p.vec(4096, i)
            goods.append((i, s))
            ss, sg = p.stamp()
            kind, resp = p.raw("echo", _req("pair", [rref_wire(s, g), rref_wire(ss, sg + 1)]))  # stale second
            assert kind == chan.REJECTED and b"OwnershipError" in resp, resp
        for i, s in goods:
            assert p.own(s) == (True, 4096 * i, me)
        assert p.drop_all() == 80
        assert _live(inst) == live  # nothing left anywhere, nothing pinned in echo

        # forged and stale handles, and the caller's own object of the wrong type
        s, g = p.vec(256, 9)
        rs, rg = p.stamp()
        forged = [
            _req("roundtrip", [rref_wire(s, g + 1)]),  # stale generation
            _req("roundtrip", [rref_wire(10 ** 9, 1)]),  # slot out of range
            _req("roundtrip", [rref_wire(0, 0)]),
            _req("roundtrip", [-1]),
            _req("roundtrip", [-(1 << 63)]),
            _req("roundtrip", [msgpack.ExtType(1, b"x" * 12)]),
            _req("checksum", [rref_wire(s, g)]),  # a borrow that was never lent
            _req("roundtrip", [rref_wire(rs, rg)]),  # ours, but a Stamp, not a vector
        ]
        for payload in forged:
            kind, resp = p.raw("echo", payload)
            assert kind == chan.REJECTED, payload
            assert b"Ownership" in resp or b"BadArgument" in resp, resp
        assert p.own(s) == (True, 9 * 256, me) and p.own(rs)[0]
        # wrong types in a raw request are rechecked by the callee
        kind, resp = p.raw("echo", _req("inc", ["one"]))
        assert kind == chan.REJECTED and b"expected int" in resp, resp
        kind, _resp = p.raw("echo", _req("inc", [1, 2]))
        assert kind == chan.REJECTED

        # through the proxy: the callee refuses a handle whose type was forged on the
        # caller's side; the call's other argument is given back alive
        err, is_ownership, v_alive, fake_alive, total, proper = p.forged_type_pair()
        assert err.startswith("CallOwnershipError") and is_ownership, err
        assert v_alive and fake_alive and total == 16 and proper == "value 20"

        assert p.drop_all() == 2
        assert _objects(inst, "echo") == 1 and p.kept_sum("echo") == 3 * 128
    _untouched(inst, before)
    assert inst.status()["echo2"]["id"] == before["echo2"]["id"]
    _sound(inst)


GARBAGE = [
    b"",
    b"\xc1",  # never-used msgpack byte
    b"\xff" * 100,
    msgpack.packb("not a tuple"),
    msgpack.packb([1]),
    msgpack.packb([10_000, []]),  # unknown method
    msgpack.packb([-1, []]),
    msgpack.packb(["inc", [1]]),  # method by name: not the wire form
]
_N = len(spec_of(Echo).by_index)
_INC = _index("inc")
# `True` is 1 and `-k` counts from the end in Python: both once ran a real method (inc)
BAD_INDEXES = [True, _INC - _N, -1, 1.0, None, "inc", 1 << 40, _N]


def test_garbage_requests_and_bad_method_indexes_are_rejected_and_the_callee_survives(placed):
    inst = placed.inst
    before = inst.status()
    with placed.probe() as p:
        for payload in GARBAGE:
            kind, _resp = p.raw("echo", payload)
            assert kind == chan.REJECTED, payload
        for idx in BAD_INDEXES:
            kind, resp = p.raw("echo", msgpack.packb([idx, [5]]))
            assert kind == chan.REJECTED and b"CallRejected" in resp, (idx, resp)
        assert p.values()[1] == 42
    _untouched(inst, before)


def test_a_panic_in_the_callee_is_domaincrashed_reclaimed_and_recovered(placed):
    """An undeclared exception ends the callee only: the caller gets DomainCrashed and
    keeps its own objects, the callee's objects are reclaimed by owner id, and the
    callee restarts (in the same host process when co-located) and serves again."""
    inst = placed.inst
    before = inst.status()
    with placed.probe() as p:
        s, _g = p.vec(1000, 2)
        assert p.give("echo", s) == 1  # something the callee owns when it dies
        mine, _g = p.vec(500, 4)
        assert _objects(inst, "echo") == 1
        err = p.crash_callee()
        assert err.startswith("DomainCrashed"), err
        now = _wait_restarted(inst, "echo", before["echo"]["id"])
        assert now["probe"]["id"] == before["probe"]["id"] and now["probe"]["restarts"] == 0
        if placed.colocated:  # a fresh instance in the same process
            assert now["echo"]["pid"] == before["echo"]["pid"]
        else:
            assert now["echo"]["pid"] != before["echo"]["pid"]
        stats = inst.request("heap", check=True)
        assert stats["violations"] == []
        assert str(before["echo"]["id"]) not in stats["stats"]["domains"]  # the dead incarnation's object is freed
        assert p.own(mine) == (True, 500 * 4, now["probe"]["id"])  # the caller's own object is untouched
        # the probe's proxy reaches the restarted incarnation, which starts empty
        assert p.values() == (True, 42, b"abc", "world")
        assert p.kept_sum("echo") == 0 and _objects(inst, "echo") == 0
    _sound(inst)


def test_a_caller_killed_inside_a_call_that_lends(placed):
    """The probe lends Echo a vector for 8 s (Echo.hold) and is killed with SIGKILL
    while Echo holds it.  In its own process, the probe alone dies: the lent object
    outlives it until the borrow ends, then is freed, and Echo never faults.  In Echo's
    group, the signal ends the group's process: both are reclaimed and restarted.
    Either way nothing leaks and both serve again."""
    from redleaf.shared_heap import HeapManager

    inst = placed.inst
    before = inst.status()
    pid = before["echo"]["pid"]
    probe_id = before["probe"]["id"]
    outcome: list = []
    with placed.probe() as p:
        def call():
            try:
                outcome.append(p.lend_and_hold(1 << 20, 8.0))
            except DomainCrashed as ex:
                outcome.append(ex)

        t = threading.Thread(target=call, daemon=True)
        t.start()
        # kill only once the probe has lent the object and Echo, whose only caller it
        # is, is serving the call
        heap = HeapManager.open(str(inst.paths.heap), readonly=True)
        try:
            rec = heap.hf.records
            deadline = time.monotonic() + 30
            while not ((rec["owner"] == probe_id) & (rec["borrower"] != 0)).any():
                assert time.monotonic() < deadline, "the probe never lent its object"
                time.sleep(0.01)
            wait_busy(heap.runtime_area(before["echo"]["id"]), "echo")
        finally:
            rec = None
            heap.close()
        r = inst.request("kill", name="probe", how="sigkill")
        assert sorted(r["hits"]) == (["echo", "probe"] if placed.colocated else ["probe"])
        t.join(60)
        assert len(outcome) == 1 and isinstance(outcome[0], DomainCrashed), outcome

        def lender_objects():
            return inst.request("heap", check=False)["stats"]["domains"].get(str(probe_id), {}).get("objects", 0)

        if placed.colocated:
            now = _wait_restarted(inst, "probe", probe_id)
            now = _wait_restarted(inst, "echo", before["echo"]["id"])
            assert now["echo"]["pid"] == now["probe"]["pid"] != pid  # a new host for the group
            assert lender_objects() == 0
        else:
            deadline = time.monotonic() + 6.0  # well inside the 8 s hold
            while inst.status()["probe"]["id"] == probe_id:
                assert time.monotonic() < deadline, "the probe's death was not noticed"
                time.sleep(0.02)
            # the lent object lives on while the callee reads it ...
            assert lender_objects() == 1
            deadline = time.monotonic() + 20
            while lender_objects():
                assert time.monotonic() < deadline, "the lent object was not freed when the borrow ended"
                time.sleep(0.05)
            now = inst.status()
            # ... and the callee never faulted
            assert now["echo"]["pid"] == pid and now["echo"]["id"] == before["echo"]["id"]
            _wait_restarted(inst, "probe", probe_id)
        _sound(inst)
        assert p.values() == (True, 42, b"abc", "world")  # the new probe reaches Echo


KEEPING = (("k", "tests.domains.keeping:KeepingDomain"),)
DEFERRING = (("d", "tests.domains.deferring:DeferringDomain"),)


def test_a_declared_error_frees_what_the_call_moved_unless_the_callee_kept_it(make_placed):
    """As a Rust callee returning Err drops its arguments; the error keeps its type
    and message."""
    placed = make_placed(KEEPING)
    inst = placed.inst
    with placed.probe() as p:
        base = _objects(inst, "k")
        for _ in range(50):
            assert p.refuse("k", 64, 0, False) == "Refused: no"
        assert _objects(inst, "k") == base and _objects(inst, "probe") == 0  # nothing leaked anywhere
        assert p.refuse("k", 64, 1, True) == "Refused: no"
        assert p.kept("k") == 64  # kept, intact
        assert _objects(inst, "k") == base + 1
    _sound(inst)


def test_deferred_work_runs_after_the_answer_and_a_failing_one_is_a_panic(make_placed):
    placed = make_placed(DEFERRING)
    inst = placed.inst
    old = inst.status()["d"]["id"]
    with placed.probe() as p:
        answered, ran = p.deferred("d")
        assert ran > answered  # the deferred task ran after the method answered
        first, later = p.deferred_fails("d")
        if placed.colocated:
            # the callee's bottom half runs on the caller's thread before the call
            # returns into it (domains/local_link.py), so the panic ends that call
            assert first.startswith("DomainCrashed"), first
        else:
            # the answer reaches the caller; the domain dies after it
            assert first == "answered" and later.startswith("DomainCrashed"), (first, later)
    _wait_restarted(inst, "d", old)
    _sound(inst)

