"""Calls, ownership and faults in both placements (DESIGN §7a): a Probe domain
calls Echo either from its own process (channels) or from Echo's group
(co-located: same proxies, on one thread).  The facts must be the same."""

import time

import pytest

from redleaf.domains import DomainCrashed
from tests.domains.colo_probe import Probe

BASE = """
[heap]
size = "32MiB"
records = 65536

[supervisor]
watchdog_s = 2.0

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 20
backoff_s = 0.01
{echo_group}

[[domain]]
name = "probe"
target = "tests.domains.colo_probe:ProbeDomain"
uses = ["echo"]
restart = "permanent"
max_restarts = 20
backoff_s = 0.01
{probe_group}
"""


def manifest(placement: str) -> str:
    g = 'group = "g"' if placement == "colocated" else ""
    return BASE.format(echo_group=g, probe_group=g)


@pytest.fixture(params=["process", "colocated"])
def placed(request, make_instance):
    inst = make_instance(manifest(request.param))
    inst.wait_state("probe", "running", timeout=30)
    return request.param, inst


def test_status_shows_group_and_process(placed):
    placement, inst = placed
    st = inst.status()
    if placement == "colocated":
        assert st["echo"]["group"] == st["probe"]["group"] == "g"
        assert st["echo"]["pid"] == st["probe"]["pid"]
        assert st["echo"]["id"] != st["probe"]["id"]
    else:
        assert st["echo"]["group"] is None and st["probe"]["group"] is None
        assert st["echo"]["pid"] != st["probe"]["pid"]


def test_values_rrefs_borrows_and_moves(placed):
    placement, inst = placed
    with inst.attach() as d:
        p = d.lookup("probe", Probe)
        me, echo_id = p.ids()
        assert me != echo_id
        assert p.null() == 1
        assert p.inc(41) == 42
        assert p.rref(4096) == (2 * 4096, me)  # came back: owned by the prober again
        assert p.borrow(100) == (100, True, me)  # lent: still the prober's
        owner, kept, err = p.move()
        assert owner == echo_id  # moved: the record names the callee's domain id
        assert kept == 3 * 64
        assert err == "OwnershipError"  # use after move
        assert p.declared() == "NotFound"
    assert inst.request("heap", check=True)["violations"] == []


def test_panic_of_callee_is_domaincrashed_and_the_caller_keeps_serving(placed):
    placement, inst = placed
    st = inst.status()
    with inst.attach() as d:
        p = d.lookup("probe", Probe)
        slot = p.keep_own(1000, 5)
        assert p.crash_callee() == "DomainCrashed"
        new = inst.wait_state("echo", "running", timeout=30, pid_not=None if placement == "colocated"
                              else st["echo"]["pid"])
        # the prober was untouched: same incarnation, its own heap object intact
        now = inst.status()
        assert now["probe"]["id"] == st["probe"]["id"] and now["probe"]["restarts"] == 0
        assert p.own_sum() == 5 * 1000
        assert slot > 0
        if placement == "colocated":  # restarted in the same process, as a fresh instance
            assert new["pid"] == st["echo"]["pid"]
            assert inst.status()["echo"]["restarts"] >= 1
        assert p.inc(1) == 2  # the prober reaches the new incarnation
    assert inst.request("heap", check=True)["violations"] == []


def wait_restarted(inst, name: str, timeout: float = 30.0) -> dict:
    """Status once `name` has been restarted at least once and runs again."""
    deadline = time.monotonic() + timeout
    while True:
        st = inst.status()
        if st[name]["restarts"] >= 1 and st[name]["state"] == "running":
            return st
        assert time.monotonic() < deadline, f"{name} was not restarted: {st[name]}"
        time.sleep(0.01)


def _colocated(make_instance):
    inst = make_instance(manifest("colocated"))
    inst.wait_state("probe", "running", timeout=30)
    return inst


def test_kill_exception_hits_one_member_of_a_group(make_instance):
    inst = _colocated(make_instance)
    st = inst.status()
    r = inst.request("kill", name="echo", how="exception")
    assert r["hits"] == ["echo"] and r["group"] == "g"
    now = wait_restarted(inst, "echo")
    assert now["echo"]["pid"] == st["echo"]["pid"]  # the same process
    assert now["probe"]["restarts"] == 0 and now["probe"]["id"] == st["probe"]["id"]
    with inst.attach() as d:
        assert d.lookup("probe", Probe).inc(1) == 2


def test_kill9_of_a_group_restarts_every_member_and_the_heap_is_clean(make_instance):
    inst = _colocated(make_instance)
    st = inst.status()
    with inst.attach() as d:
        d.lookup("probe", Probe).keep_own(4096, 1)  # something the group owns when it dies
    r = inst.request("kill", name="probe", how="sigkill")
    assert sorted(r["hits"]) == ["echo", "probe"]
    e = inst.wait_state("echo", "running", timeout=30, pid_not=st["echo"]["pid"])
    p = inst.wait_state("probe", "running", timeout=30, pid_not=st["probe"]["pid"])
    assert e["pid"] == p["pid"]  # a new host for the whole group
    assert inst.request("heap", check=True)["violations"] == []
    with inst.attach() as d:
        assert d.lookup("probe", Probe).rref(64) == (128, d.lookup("probe", Probe).ids()[0])
