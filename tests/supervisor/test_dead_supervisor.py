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
