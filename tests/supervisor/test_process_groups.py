"""A domain's process group dies with it, and failed loads leave nothing behind
(issue 13.7)."""

import os
import signal
import time

import pytest

from redleaf.domains.errors import ControlError
from tests.conftest import ECHO_MANIFEST, process_running

DEADLINE_S = 20.0


@pytest.fixture
def grandchildren(tmp_path):
    """Pid files of grandchildren; any still running at the end is killed."""
    files = []

    def pidfile(name: str) -> str:
        p = str(tmp_path / f"{name}.pid")
        files.append(p)
        return p

    yield pidfile
    for p in files:
        try:
            pid = int(open(p).read())
        except (OSError, ValueError):
            continue
        if process_running(pid):
            os.kill(pid, signal.SIGKILL)


def _read_pid(path: str) -> int:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            return int(open(path).read())
        except (OSError, ValueError):
            time.sleep(0.01)
    raise AssertionError(f"the domain did not write {path} within {DEADLINE_S}s")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if not process_running(pid):
            return True
        time.sleep(0.01)
    return False


def _load_forker(inst, name: str, pidfile: str) -> int:
    inst.request("load", name=name, target="tests.supervisor.bad_domains:ForksGrandchild", restart="permanent",
                 config={"pidfile": pidfile}, uses=[], shadow=False)
    pid = _read_pid(pidfile)
    assert process_running(pid)
    return pid


def test_a_forked_process_dies_with_its_domain_on_unload(echo_instance, grandchildren):
    inst = echo_instance
    gc = _load_forker(inst, "forker", grandchildren("unload"))
    inst.request("unload", name="forker")
    assert _wait_gone(gc)


def test_a_forked_process_dies_with_its_domain_on_crash(echo_instance, grandchildren):
    inst = echo_instance
    path = grandchildren("crash")
    gc = _load_forker(inst, "forker", path)
    old = inst.status()["forker"]["pid"]
    os.unlink(path)
    inst.request("kill", name="forker", how="sigkill")
    inst.wait_state("forker", "running", pid_not=old)
    assert _wait_gone(gc)
    assert process_running(_read_pid(path))  # the restarted domain's own grandchild


def test_a_forked_process_dies_with_the_instance_on_down(make_instance, grandchildren):
    inst = make_instance(ECHO_MANIFEST)
    gc = _load_forker(inst, "forker", grandchildren("down"))
    inst.stop()
    assert _wait_gone(gc)


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
@pytest.mark.parametrize("target, message", [
    ("tests.supervisor.bad_domains:RaisesInInit", "constructor refused"),
    ("tests.supervisor.bad_domains:ExitsInInit", "exited with status 3"),
    ("no.such.module:Thing", "ModuleNotFoundError"),
])
def test_failed_loads_of_every_restart_kind_give_one_line_and_leave_no_entry(echo_instance, restart, target,
                                                                             message):
    inst = echo_instance
    with pytest.raises(ControlError, match=message) as err:
        inst.request("load", name="bad", target=target, restart=restart, config={}, uses=[], shadow=False)
    assert "\n" not in str(err.value)
    st = inst.status()
    assert "bad" not in st
    assert st["echo"]["state"] == "running"


def test_a_forked_process_is_cleaned_with_a_killed_supervisor(make_instance, grandchildren):
    from redleaf.supervisor import stale

    inst = make_instance(ECHO_MANIFEST)
    gc = _load_forker(inst, "forker", grandchildren("stale"))
    inst.proc.kill()  # the supervisor dies; zygote and domains follow it (PDEATHSIG)
    inst.proc.wait()
    assert stale.clean_stale(inst.name)  # what the next `redleaf up` / `down` does
    assert _wait_gone(gc)
