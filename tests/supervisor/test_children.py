"""Child domains (spawn_child / kill_child, granted by may_spawn): the child runs the
manifest's fixed target with its spawner as its one capability, its death is pushed to
the spawner with its exit code, only its spawner may kill it, it dies with its spawner,
and a domain without may_spawn cannot spawn."""

from __future__ import annotations

import os
import signal
import time

import msgpack
import pytest

from redleaf.domains.errors import ControlError

from tests.supervisor.spawner import SpawnRefused, Spawner

MANIFEST = """
[supervisor]
watchdog_s = 5.0

[[domain]]
name = "sp"
target = "tests.supervisor.spawner:SpawnerDomain"
may_spawn = true
spawn_target = "tests.supervisor.spawner:Child"

[[domain]]
name = "plain"
target = "tests.supervisor.spawner:SpawnerDomain"
"""


def _exits(sp, n: int) -> list:
    deadline = time.monotonic() + 30
    while True:
        seen = msgpack.unpackb(sp.exits())
        if len(seen) >= n:
            return seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)


def _children(inst) -> dict:
    return {n: d for n, d in inst.status().items() if n.startswith("sp.child")}


def test_children_report_their_exit_die_by_their_spawner_and_with_it(make_instance):
    inst = make_instance(MANIFEST)
    with inst.attach() as c:
        sp = c.lookup("sp", Spawner)
        a = sp.spawn("exit3")
        assert _exits(sp, 1) == [[a, 3]]
        b = sp.spawn("sleep")
        other = c.lookup("plain", Spawner)
        with pytest.raises(SpawnRefused, match="AuthError"):
            other.spawn("sleep")  # no may_spawn
        with pytest.raises(SpawnRefused, match="NotFound"):
            other.kill(b)  # not its child
        sp.kill(b)
        assert _exits(sp, 2)[1] == [b, -signal.SIGKILL]
        assert not _children(inst)  # a dead child leaves no entry behind
        s1 = sp.spawn("sleep")
        deadline = time.monotonic() + 30
        while not any(d["state"] == "running" and d["id"] == s1 for d in _children(inst).values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child_pid = next(iter(_children(inst).values()))["pid"]
        old = inst.status()["sp"]["pid"]
        os.kill(old, signal.SIGKILL)
        inst.wait_state("sp", "running", pid_not=old, timeout=30)
        while _children(inst):  # the orphaned child is killed, not left running
            assert time.monotonic() < deadline, _children(inst)
            time.sleep(0.01)
        with pytest.raises(ProcessLookupError):
            os.kill(child_pid, 0)
        assert msgpack.unpackb(sp.exits()) == []  # the new incarnation is told nothing of them


def test_an_operator_may_unload_a_child_but_not_restart_it(make_instance):
    inst = make_instance(MANIFEST)
    with inst.attach() as c:
        sp = c.lookup("sp", Spawner)
        child = sp.spawn("sleep")
        deadline = time.monotonic() + 30
        while not any(d["state"] == "running" for d in _children(inst).values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        name = next(iter(_children(inst)))
        with pytest.raises(ControlError) as ei:
            inst.request("restart", name=name)
        assert ei.value.kind == "BadRequest" and "spawned child" in str(ei.value)
        inst.request("unload", name=name)  # answered once it is gone
        assert name not in inst.status()
        assert _exits(sp, 1)[0][0] == child
