"""The supervisor with real processes: boot, load, unload, faults, restart policy."""

import os
import subprocess
import sys
import time

import pytest

from redleaf.domains.errors import ControlError
from tests.conftest import ECHO_MANIFEST, process_running


def test_boot_status_and_down_leave_nothing(make_instance):
    inst = make_instance(ECHO_MANIFEST)
    st = inst.status()
    assert st["echo"]["state"] == "running"
    assert st["echo"]["pid"] > 0
    assert oct(os.stat(inst.paths.root).st_mode & 0o777) == "0o700"
    assert oct(os.stat(inst.paths.token).st_mode & 0o777) == "0o600"
    pid = st["echo"]["pid"]
    inst.stop()
    assert not inst.leftovers()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_load_and_unload_while_others_run(echo_instance):
    inst = echo_instance
    echo_pid = inst.status()["echo"]["pid"]
    r = inst.request("load", name="echo2", target="redleaf.domains.builtin.echo:EchoDomain", restart="permanent",
                     config={}, uses=[], shadow=False)
    assert r["pid"] > 0
    assert inst.status()["echo2"]["state"] == "running"
    inst.request("unload", name="echo2")
    st = inst.status()
    assert "echo2" not in st
    assert st["echo"]["pid"] == echo_pid and st["echo"]["state"] == "running"


@pytest.mark.parametrize("target, message", [
    ("no.such.module:Thing", "ModuleNotFoundError"),
    ("redleaf.domains.builtin.echo:Nope", "has no attribute"),
    ("tests.supervisor.bad_domains:RaisesInInit", "constructor refused"),
])
def test_bad_loads_give_a_clear_error_and_leave_no_half_domain(echo_instance, target, message):
    inst = echo_instance
    with pytest.raises(ControlError, match=message):
        inst.request("load", name="bad", target=target, restart="permanent", config={}, uses=[], shadow=False)
    assert "bad" not in inst.status()
    assert inst.status()["echo"]["state"] == "running"


def test_duplicate_and_unknown_names(echo_instance):
    inst = echo_instance
    with pytest.raises(ControlError, match="already exists"):
        inst.request("load", name="echo", target="redleaf.domains.builtin.echo:EchoDomain", restart="permanent",
                     config={}, uses=[], shadow=False)
    with pytest.raises(ControlError, match="no domain named"):
        inst.request("unload", name="ghost")


@pytest.mark.parametrize("how", ["sigkill", "sigsegv", "exception"])
def test_crash_is_detected_and_restarted(echo_instance, how):
    inst = echo_instance
    old = inst.status()["echo"]
    inst.request("kill", name="echo", how=how)
    new = inst.wait_state("echo", "running", pid_not=old["pid"])
    assert new["restarts"] == old["restarts"] + 1
    with pytest.raises(ProcessLookupError):
        os.kill(old["pid"], 0)


def test_exit_of_a_transient_domain_is_not_restarted(echo_instance):
    inst = echo_instance
    inst.request("load", name="tr", target="redleaf.domains.builtin.echo:EchoDomain", restart="transient",
                 config={}, uses=[], shadow=False)
    inst.request("kill", name="tr", how="exit")
    st = inst.wait_state("tr", "stopped")
    assert st["restarts"] == 0


def test_hang_is_caught_by_the_watchdog(echo_instance):
    inst = echo_instance
    old = inst.status()["echo"]
    inst.request("kill", name="echo", how="hang")
    new = inst.wait_state("echo", "running", timeout=15, pid_not=old["pid"])
    assert new["restarts"] == old["restarts"] + 1


def test_crash_loop_ends_failed(make_instance):
    inst = make_instance(ECHO_MANIFEST + """
[[domain]]
name = "looper"
target = "tests.supervisor.bad_domains:DiesSoon"
restart = "permanent"
max_restarts = 3
period_s = 30
backoff_s = 0.01
""")
    st = inst.wait_state("looper", "failed", timeout=20)
    assert st["restarts"] == 3
    assert "intensity" in st["reason"]
    time.sleep(0.3)
    assert inst.status()["looper"]["state"] == "failed"


def test_malformed_control_messages_do_not_hurt_the_supervisor(echo_instance):
    import msgpack
    import zmq

    inst = echo_instance
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(inst.paths.control)
    token = inst.paths.token.read_bytes()
    bad = [
        b"\xc1random bytes",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 1, "token": token, "cmd": "nope", "rid": 1}),
        msgpack.packb({"v": 1, "token": token, "cmd": "kill", "rid": 2}),
        msgpack.packb({"v": 1, "token": token, "cmd": "kill", "rid": 3, "name": ["x"], "how": 1}),
        msgpack.packb({"v": 1, "token": b"wrong", "cmd": "shutdown", "rid": 4}),
        msgpack.packb({"v": 1, "cmd": "shutdown", "rid": 5}),
        msgpack.packb({"v": 1, "token": token, "cmd": "lookup", "rid": 6, "domain_id": 99999, "name": "echo",
                       "interface": "x", "fingerprint": "y"}),
    ]
    for frame in bad:
        s.send(frame)
        assert s.poll(5000), f"no reply to {frame[:40]!r}"
        reply = msgpack.unpackb(s.recv())
        assert reply["ok"] is False and reply["error"]
    # an oversized frame: zmq drops the peer; the supervisor keeps serving
    s.send(b"\x00" * (2 << 20))
    s.close()
    ctx.term()
    assert inst.status()["echo"]["state"] == "running"


def test_kill_9_of_the_supervisor_leaves_no_domain_and_next_up_cleans(make_instance):
    inst = make_instance(ECHO_MANIFEST)
    st = inst.status()
    pids = [d["pid"] for d in st.values()]
    inst.proc.kill()
    inst.proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(process_running(p) for p in pids):
        time.sleep(0.02)
    assert not any(process_running(p) for p in pids), "a domain outlived its supervisor"
    assert inst.paths.heap.exists()  # stale files remain until the next up/down
    from redleaf.supervisor.instance import Instance

    again = Instance(ECHO_MANIFEST, name=inst.name)
    again.start()
    try:
        assert again.status()["echo"]["state"] == "running"
    finally:
        again.stop()
        again.cleanup_log()


def test_cli_status_json_and_errors(echo_instance):
    import json

    inst = echo_instance
    out = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "status", "--json"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["name"] == "echo"
    out = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "unload", "ghost"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.startswith("redleaf: ") and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", "nonexistent-inst", "status"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "no redleaf instance" in out.stderr


def test_a_long_call_is_not_mistaken_for_a_hang(echo_instance):
    """The watchdog (2 s here) spares a domain that is busy inside a call."""
    from redleaf.domains.builtin.echo import Echo

    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    with inst.attach() as d:
        d.lookup("echo", Echo).sleep(3.0)
    st = inst.status()["echo"]
    assert st["pid"] == pid and st["restarts"] == 0
