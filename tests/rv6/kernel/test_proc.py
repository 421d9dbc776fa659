"""The process table: spawn/exit/wait as a state machine, orphans to init."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings, strategies as hs

from redleaf.rv6.kernel.errors import WOULD_BLOCK, Rv6Error
from redleaf.rv6.kernel.file import FileTable, OpenFile, CONSOLE
from redleaf.rv6.kernel.proc import INIT_PID, RUNNING, ZOMBIE, ProcTable


def table():
    return ProcTable(FileTable())


def test_init_is_pid_1_and_children_get_fresh_pids():
    t = table()
    assert t.init.pid == INIT_PID
    a = t.alloc(t.init, "a")
    b = t.alloc(a, "b")
    assert (a.pid, b.pid) == (2, 3)
    assert b.ppid == a.pid and b.pid in a.children


def test_wait_blocks_until_exit_then_returns_status_once():
    t = table()
    a = t.alloc(t.init, "a")
    c = t.alloc(a, "c")
    assert t.wait(a) is WOULD_BLOCK
    t.exit(c, 3)
    assert c.state == ZOMBIE
    assert t.wait(a) == (c.pid, 3)
    with pytest.raises(Rv6Error) as ei:
        t.wait(a)
    assert ei.value.errno == errno.ECHILD


def test_wait_for_a_given_child_ignores_the_others():
    t = table()
    a = t.alloc(t.init, "a")
    c1, c2 = t.alloc(a, "c1"), t.alloc(a, "c2")
    t.exit(c1, 1)
    assert t.wait(a, c2.pid) is WOULD_BLOCK
    with pytest.raises(Rv6Error) as ei:
        t.wait(a, 999)
    assert ei.value.errno == errno.ECHILD
    t.exit(c2, 2)
    assert t.wait(a, c2.pid) == (c2.pid, 2)
    assert t.wait(a, -1) == (c1.pid, 1)


def test_orphans_go_to_init_and_init_reaps_them():
    t = table()
    a = t.alloc(t.init, "a")
    c = t.alloc(a, "c")
    t.exit(a, 0)
    assert c.ppid == INIT_PID and c.pid in t.init.children
    assert a.pid not in t.procs  # init's child: reaped at once
    t.exit(c, 5)
    assert c.pid not in t.procs


def test_second_exit_keeps_the_first_status():
    t = table()
    a = t.alloc(t.init, "a")
    c = t.alloc(a, "c")
    t.exit(c, 7)
    t.exit(c, 137)
    assert t.wait(a) == (c.pid, 7)


def test_exit_releases_the_last_references_only():
    t = table()
    a = t.alloc(t.init, "a")
    c = t.alloc(a, "c")
    f = t.files.open(OpenFile(CONSOLE, True, True))
    a.fds.install(f)
    c.fds.inherit(a.fds, [0, 0])
    assert f.ref == 3
    assert t.exit(c, 0) == []
    assert t.exit(a, 0) == [f]


def test_init_never_exits_and_bad_pids_are_errors():
    t = table()
    with pytest.raises(Rv6Error) as ei:
        t.exit(t.init, 0)
    assert ei.value.errno == errno.EPERM
    with pytest.raises(Rv6Error) as ei:
        t.get(42)
    assert ei.value.errno == errno.ESRCH
    with pytest.raises(Rv6Error) as ei:
        t.wait(t.init, "x")
    assert ei.value.errno == errno.EINVAL


def test_a_full_table_refuses_with_eagain():
    t = ProcTable(FileTable(), limit=3)
    a = t.alloc(t.init, "a")
    t.alloc(a, "b")
    with pytest.raises(Rv6Error) as ei:
        t.alloc(a, "c")
    assert ei.value.errno == errno.EAGAIN


@settings(max_examples=150, deadline=None)
@given(hs.lists(hs.tuples(hs.sampled_from(["spawn", "exit", "wait"]), hs.integers(0, 30), hs.integers(0, 255)),
                max_size=60))
def test_random_histories_keep_the_tree_consistent(ops):
    """Every parent/child link is mutual, every process but init has a live parent,
    and a status waited for is the status its process exited with."""
    t = table()
    exited: dict[int, int] = {}
    for op, k, status in ops:
        live = sorted(t.procs)
        p = t.procs[live[k % len(live)]]
        if op == "spawn" and p.state == RUNNING:
            t.alloc(p, "x")
        elif op == "exit" and p.pid != INIT_PID and p.state == RUNNING:
            t.exit(p, status)
            exited[p.pid] = status
        elif op == "wait" and p.state == RUNNING:
            try:
                r = t.wait(p)
            except Rv6Error as e:
                assert e.errno == errno.ECHILD and not p.children
            else:
                if r is not WOULD_BLOCK:
                    assert exited[r[0]] == r[1]
        for q in t.procs.values():
            for c in q.children:
                assert t.procs[c].ppid == q.pid
            if q.pid != INIT_PID:
                assert q.pid in t.procs[q.ppid].children
                assert t.procs[q.ppid].state == RUNNING
        assert all(t.procs[c].state == RUNNING for c in t.init.children)


def test_a_process_that_never_ran_is_abandoned_without_a_zombie():
    t = table()
    a = t.alloc(t.init, "a")
    c = t.alloc(a, "c")
    f = t.files.open(OpenFile(CONSOLE, True, True))
    c.fds.install(f)
    assert t.abandon(c) == [f]
    assert c.pid not in t.procs and not a.children
    with pytest.raises(Rv6Error) as ei:
        t.wait(a)
    assert ei.value.errno == errno.ECHILD
