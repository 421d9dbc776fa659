"""In-call fault injection (`inject`): the Nth call of a method raises an undeclared
exception, exits, hangs or stalls inside the call.  The bookkeeping (FaultArm) is
tested alone; the rest through a real instance."""

import pytest

from redleaf.domains import ControlError, DomainCrashed, RpcTimeout
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.control import ProtocolError, decode_request, encode
from redleaf.domains.interface import spec_of
from redleaf.domains.proxy import Dispatcher, FaultArm
from tests.domains.quick import Quick

# ------------------------------------------------------------------ FaultArm alone


class _Obj(Echo):
    def __getattr__(self, name):  # the dispatcher only looks the methods up
        return lambda *a: None


def _disp():
    return Dispatcher("echo", spec_of(Echo), _Obj())


def test_arm_fires_on_the_nth_call_only_and_once():
    d = _disp()
    arm = FaultArm("inc", 3, "exception")
    assert arm.arm([d]) == 1
    assert d.armed is arm and d.armed_idx == d.method_index("inc")
    assert [arm.hit() for _ in range(2)] == [False, False]
    assert arm.hit() is True
    assert d.armed is None  # one-shot: disarmed as it fires


def test_arm_counts_across_exports_and_skips_those_without_the_method():
    d1, d2 = _disp(), _disp()
    arm = FaultArm("inc", 2, "exit")
    assert arm.arm([d1, d2]) == 2
    assert FaultArm("no_such", 1, "exit").arm([_disp()]) == 0
    arm.hit()
    assert arm.hit() and d1.armed is None and d2.armed is None


@pytest.mark.parametrize("method,nth,action,err", [("inc", 0, "exit", "nth must be >= 1"),
                                                    ("inc", 1, "explode", "unknown fault action")])
def test_arm_refuses_bad_requests(method, nth, action, err):
    with pytest.raises(ValueError, match=err):
        FaultArm(method, nth, action)


def test_the_inject_command_needs_every_field():
    base = {"v": 1, "token": b"x", "rid": 1, "cmd": "inject", "name": "echo", "method": "inc", "nth": 1,
            "action": "exit", "stall_s": 0}
    assert decode_request(encode(base))["cmd"] == "inject"
    with pytest.raises(ProtocolError, match="needs field 'nth'"):
        decode_request(encode({k: v for k, v in base.items() if k != "nth"}))


# ------------------------------------------------------------------ through an instance

QUICK_MANIFEST = """
[heap]
size = "16MiB"
records = 4096

[supervisor]
watchdog_s = 2.0

[[domain]]
name = "quick"
target = "tests.domains.quick:QuickDomain"
restart = "permanent"
max_restarts = 20
period_s = 5.0
backoff_s = 0.01
"""


def _inject(inst, name, method, nth, action, stall_s=0.0):
    return inst.request("inject", name=name, method=method, nth=nth, action=action, stall_s=stall_s)


def _wait_restarted(inst, name, n, timeout=20.0):
    """Until `name` is running after its nth restart (a group member keeps its host's pid)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        row = inst.status()[name]
        if row["state"] == "running" and row["restarts"] >= n:
            return row
        assert time.monotonic() < deadline, f"{name} not back after restart {n}: {row}"
        time.sleep(0.01)


def _check_heap(inst):
    assert inst.request("heap", check=True)["violations"] == []


@pytest.mark.parametrize("action", ["exception", "exit"])
def test_the_nth_call_crashes_inside_the_call_and_the_domain_restarts(echo_instance, action):
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    r = _inject(inst, "echo", "inc", 3, action)
    assert r["pid"] == pid
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        assert e.inc(1) == 2
        assert e.echo(b"x") == b"x"  # another method does not count
        assert e.inc(2) == 3
        with pytest.raises(DomainCrashed):
            e.inc(3)
        row = inst.wait_state("echo", "running", pid_not=pid)
        assert row["restarts"] == 1
        assert e.inc(4) == 5  # the new incarnation is not armed
    _check_heap(inst)


def test_inject_refuses_an_unknown_method_and_a_non_domain(echo_instance):
    with pytest.raises(ControlError, match="no export of this domain has a method 'nope'"):
        _inject(echo_instance, "echo", "nope", 1, "exception")
    with pytest.raises(ControlError, match="action must be one of"):
        _inject(echo_instance, "echo", "inc", 1, "explode")
    with pytest.raises(ControlError, match="no domain named"):
        _inject(echo_instance, "ghost", "inc", 1, "exit")
    assert echo_instance.status()["echo"]["restarts"] == 0


@pytest.mark.parametrize("action,stall", [("slow", 4.0), ("hang", 0.0)])
def test_a_stall_past_the_deadline_is_a_timeout_and_the_callee_is_replaced(make_instance, action, stall):
    inst = make_instance(QUICK_MANIFEST)
    pid = inst.status()["quick"]["pid"]
    _inject(inst, "quick", "inc", 1, action, stall)
    with inst.attach() as d:
        q = d.lookup("quick", Quick)
        with pytest.raises(RpcTimeout):
            q.inc(1)
        inst.wait_state("quick", "running", pid_not=pid, timeout=20.0)
        assert q.inc(1) == 2
    _check_heap(inst)


def test_a_short_stall_is_only_slow(make_instance):
    inst = make_instance(QUICK_MANIFEST)
    pid = inst.status()["quick"]["pid"]
    _inject(inst, "quick", "inc", 2, "slow", 0.2)
    with inst.attach() as d:
        q = d.lookup("quick", Quick)
        assert [q.inc(i) for i in range(3)] == [1, 2, 3]
    assert inst.status()["quick"]["pid"] == pid


def test_in_a_group_only_the_armed_member_panics(make_instance):
    from tests.domains.test_colocated import manifest

    inst = make_instance(manifest("colocated"))
    inst.wait_state("probe", "running", timeout=30)
    before = inst.status()
    _inject(inst, "echo", "inc", 1, "exception")
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        with pytest.raises(DomainCrashed):
            e.inc(1)
        _wait_restarted(inst, "echo", 1)
        assert e.inc(1) == 2
    after = inst.status()
    assert after["probe"]["pid"] == before["probe"]["pid"] and after["probe"]["restarts"] == 0
    with pytest.raises(ControlError, match="would end the whole group"):
        _inject(inst, "echo", "inc", 1, "exit")
    _check_heap(inst)


def test_a_caller_may_shorten_its_deadline(echo_instance):
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    _inject(inst, "echo", "inc", 2, "slow", 30.0)
    with inst.attach() as d:
        e = d.lookup("echo", Echo, deadline_s=1.0)  # Echo's own deadline is 10 s
        assert e.inc(1) == 2
        with pytest.raises(RpcTimeout, match="within 1s"):
            e.inc(2)
        inst.wait_state("echo", "running", pid_not=pid, timeout=20.0)
        assert e.inc(3) == 4
        with pytest.raises(ValueError, match="deadline_s must be a positive"):
            d.lookup("echo", Echo, deadline_s=0)
    _check_heap(inst)
