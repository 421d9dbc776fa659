"""A dead supervisor is known at once: every control request checks the supervisor's pid
(and start time) between short slices of its wait, so a CLI command or a client fails
with a message naming the dead pid instead of waiting out its timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from redleaf.domains.control import ControlClient
from redleaf.domains.errors import InstanceNotRunning
from tests.conftest import process_running


def _kill_supervisor(inst) -> int:
    pid = inst.request("status")["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_requests_to_a_dead_supervisor_name_its_death(make_instance):
    inst = make_instance()
    c = ControlClient(inst.name, timeout_s=600)   # a timeout that would fail the test if waited out
    try:
        pid = _kill_supervisor(inst)
        with pytest.raises(InstanceNotRunning, match=rf"not running \(pid {pid} died\); `redleaf up --name {inst.name}`"):
            c.request("status")
    finally:
        c.close()
    for cmd in (["status"], ["heap"], ["status", "--json"]):
        r = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, *cmd],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and f"(pid {pid} died)" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_a_request_in_flight_when_the_supervisor_dies_fails_at_once(make_instance):
    inst = make_instance()
    c = ControlClient(inst.name, timeout_s=600)
    try:
        sup = c.request("status")["pid"]
        os.kill(sup, signal.SIGSTOP)        # it takes the request but will never answer it
        try:
            import threading
            err = []

            def call():
                try:
                    c.request("status")
                except InstanceNotRunning as e:
                    err.append(str(e))
            t = threading.Thread(target=call)
            t.start()
            os.kill(sup, signal.SIGKILL)
            t.join(120)
            assert not t.is_alive()
            assert err and f"(pid {sup} died)" in err[0]
        finally:
            if process_running(sup):
                os.kill(sup, signal.SIGKILL)
    finally:
        c.close()


def test_a_client_waiting_in_a_call_learns_the_instance_is_gone(make_instance):
    """Its callee dies with the supervisor and nobody is left to mark the channel: the
    call checks the supervisor's pid while it waits and fails with InstanceGone (a
    DomainCrashed that says the instance is gone), not an RpcTimeout saying the callee
    was 'treated as hung and killed' 12-33 s later."""
    import threading

    from redleaf.domains import DomainCrashed, InstanceGone
    from redleaf.domains.builtin.echo import Echo
    from tests.conftest import wait_busy

    inst = make_instance()
    with inst.attach() as d:
        echo = d.lookup("echo", Echo)
        area = d.heap.runtime_area(inst.status()["echo"]["id"])
        got = []

        def call():
            try:
                echo.sleep(600.0)
            except Exception as e:   # noqa: BLE001 - the type is what the test checks
                got.append(e)
        t = threading.Thread(target=call)
        t.start()
        wait_busy(area, "echo")       # the call is inside echo
        sup = inst.request("status")["pid"]
        os.kill(sup, signal.SIGKILL)
        t.join(120)
        assert not t.is_alive()
        assert len(got) == 1 and isinstance(got[0], InstanceGone) and isinstance(got[0], DomainCrashed), got
        assert f"(pid {sup} died)" in str(got[0])
