"""`shadow = true`: the driver runs as `<name>.driver` behind its shadow, and a crash
of the driver does not reach the shadow's clients."""

import os
import signal
import time

from redleaf.domains.builtin.echo import Echo

MANIFEST = """
[heap]
size = "32MiB"
records = 65536

[[domain]]
name = "e0"
target = "tests.supervisor.shadowed:ShadowedEcho"
shadow = true
max_restarts = 50
period_s = 5.0
backoff_s = 0.01
"""


def test_driver_crashes_are_hidden_by_the_shadow(make_instance):
    inst = make_instance(MANIFEST)
    st = inst.status()
    assert st["e0.driver"]["state"] == "running" and st["e0"]["state"] == "running"
    with inst.attach() as c:
        e0 = c.lookup("e0", Echo)
        x = 0
        for kill in range(3):
            pid = inst.status()["e0.driver"]["pid"]
            os.kill(pid, signal.SIGKILL)
            for _ in range(200):  # calls straddle the crash and the restart
                x = e0.inc(x)
            inst.wait_state("e0.driver", "running", pid_not=pid)
        assert x == 600
        assert int(e0.get("retries")) >= 1  # the shadow did see the crashes
    assert inst.status()["e0.driver"]["restarts"] == 3


def test_load_with_shadow_and_unload_takes_both(make_instance):
    inst = make_instance(MANIFEST)
    inst.request("load", name="e1", target="tests.supervisor.shadowed:ShadowedEcho", restart="permanent",
                 config={}, uses=[], shadow=True)
    st = inst.status()
    assert st["e1"]["state"] == "running" and st["e1.driver"]["state"] == "running"
    with inst.attach() as c:
        assert c.lookup("e1", Echo).inc(41) == 42
    inst.request("unload", name="e1")
    deadline = time.monotonic() + 10
    while ("e1" in inst.status() or "e1.driver" in inst.status()) and time.monotonic() < deadline:
        time.sleep(0.02)
    st = inst.status()
    assert "e1" not in st and "e1.driver" not in st
    assert st["e0"]["state"] == "running"
