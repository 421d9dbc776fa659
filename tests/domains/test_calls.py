"""Cross-domain calls from attached clients and across processes: what is specific
to a process boundary (a callee killed inside the call, a hang caught by a deadline)
or to attached clients (re-entry into one, many of them, one killed).  Values, RRefs,
panics and a caller killed mid-call are tested between two domains in both
placements in test_placed_calls.py."""

import os
import threading
import time

import numpy as np
import pytest

from redleaf.domains import DomainCrashed, RpcTimeout
from redleaf.domains.builtin.echo import Echo
from tests.domains.gate import Gate


GATE_MANIFEST = """
[[domain]]
name = "gate"
target = "tests.domains.gate:GateDomain"
restart = "permanent"
backoff_s = 0.01
"""


def test_callee_killed_inside_the_call_fails_it_with_domaincrashed(make_instance, tmp_path):
    """The kill lands once the callee has taken our request (its marker file says so);
    the call, which would otherwise run for minutes with no deadline, fails with
    DomainCrashed: the caller was woken by the death."""
    inst = make_instance(GATE_MANIFEST)
    pid = inst.status()["gate"]["pid"]
    marker = tmp_path / "entered"
    killed: list[int] = []

    def kill_once_inside():
        deadline = time.monotonic() + 60
        while not marker.exists():
            if time.monotonic() > deadline:
                return  # never entered: `killed` stays empty and the test fails
            time.sleep(0.002)
        killed.append(int(marker.read_text()))
        os.kill(pid, 9)

    with inst.attach() as d:
        g = d.lookup("gate", Gate)
        killer = threading.Thread(target=kill_once_inside, daemon=True)
        killer.start()
        with pytest.raises(DomainCrashed):
            g.enter(str(marker), 300.0)
        killer.join()
        assert killed == [pid]  # the process killed was serving our call
        inst.wait_state("gate", "running", pid_not=pid)
        marker.unlink()
        g.enter(str(marker), 0.0)  # the proxy reaches the restarted incarnation
        assert int(marker.read_text()) == inst.status()["gate"]["pid"] != pid


def test_hung_callee_times_out_and_is_killed(echo_instance):
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]

    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        from redleaf.domains.interface import spec_of

        spec_of(Echo).methods["sleep"].timeout_s = 0.5
        try:
            with pytest.raises(RpcTimeout):
                e.sleep(60.0)
        finally:
            spec_of(Echo).methods["sleep"].timeout_s = None
        inst.wait_state("echo", "running", pid_not=pid)


def test_reentrant_call_back_into_the_caller(echo_instance):
    inst = echo_instance
    inst.request("load", name="echo2", target="redleaf.domains.builtin.echo:EchoDomain", restart="permanent",
                 config={}, uses=[], shadow=False)
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        # the attached client also exports an Echo, and echo calls back into it
        from redleaf.domains.builtin.echo import EchoDomain

        d.export("client-echo", EchoDomain(None))
        assert e.call_back("client-echo", 10) == 12
        # nested: client -> echo -> echo2
        assert e.call_back("echo2", 5) == 7


def test_many_clients_one_server(echo_instance):
    import multiprocessing as mp

    inst = echo_instance
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_client_worker, args=(inst.name, i, q)) for i in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert all(r == "ok" for r in results), results


def _client_worker(name, i, q):
    try:
        from redleaf.domains import attach

        with attach(name) as d:
            e = d.lookup("echo", Echo)
            for k in range(500):
                assert e.inc(k) == k + 1
        q.put("ok")
    except Exception as ex:
        q.put(repr(ex))


def test_killed_client_is_reclaimed(echo_instance):
    import multiprocessing as mp

    inst = echo_instance
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hoarder, args=(inst.name, ready))
    p.start()
    assert ready.wait(30)
    st = inst.status()
    client = [r for n, r in st.items() if n.startswith("client-")]
    assert len(client) == 1 and client[0]["heap_objects"] == 100  # the hoard, nothing else
    os.kill(p.pid, 9)
    p.join()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(n.startswith("client-") for n in inst.status()):
        time.sleep(0.02)
    assert not any(n.startswith("client-") for n in inst.status())
    r = inst.request("heap", check=True)
    assert r["violations"] == []


def _hoarder(name, ready):
    from redleaf.domains import attach

    d = attach(name)
    keep = [d.heap.alloc_vec(np.uint8, 64) for _ in range(100)]
    e = d.lookup("echo", Echo)
    e.null()
    ready.set()
    time.sleep(60)

