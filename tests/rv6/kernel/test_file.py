"""Descriptors and open files: dup/dup2/inheritance, reference counts."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings, strategies as hs

from redleaf.rv6.kernel.errors import Rv6Error
from redleaf.rv6.kernel.file import INODE, NOFILE, FdTable, FileTable, OpenFile


def new_file(files, tag=0):
    return files.open(OpenFile(INODE, True, True, obj=tag))


def test_install_takes_the_lowest_free_slot_and_runs_out_with_emfile():
    files = FileTable()
    t = FdTable(files)
    fds = [t.install(new_file(files, i)) for i in range(NOFILE)]
    assert fds == list(range(NOFILE)) and NOFILE >= 16
    with pytest.raises(Rv6Error) as ei:
        t.install(new_file(files))
    assert ei.value.errno == errno.EMFILE
    t.close(5)
    assert t.install(new_file(files)) == 5


def test_dup_shares_the_file_and_the_last_close_releases_it():
    files = FileTable()
    t = FdTable(files)
    f = new_file(files)
    fd = t.install(f)
    d = t.dup(fd)
    assert t.get(d) is f and f.ref == 2
    assert t.close(fd) is False
    assert t.close(d) is True
    assert f not in files.files


def test_dup2_replaces_and_hands_back_the_old_file():
    files = FileTable()
    t = FdTable(files)
    a, b = new_file(files, "a"), new_file(files, "b")
    t.install(a)
    t.install(b)
    new, prev = t.dup2(0, 1)
    assert new == 1 and prev is b and t.get(1) is a and a.ref == 2
    assert files.close(prev) is True
    assert t.dup2(0, 0) == (0, None) and a.ref == 2
    with pytest.raises(Rv6Error) as ei:
        t.dup2(0, NOFILE)
    assert ei.value.errno == errno.EBADF
    with pytest.raises(Rv6Error) as ei:
        t.dup2(9, 3)
    assert ei.value.errno == errno.EBADF


def test_inherit_default_is_0_1_2_and_a_list_maps_child_to_parent():
    files = FileTable()
    parent = FdTable(files)
    fs = [new_file(files, i) for i in range(4)]
    for f in fs:
        parent.install(f)
    child = FdTable(files)
    child.inherit(parent, None)
    assert child.open_fds() == [0, 1, 2] and fs[3].ref == 1
    c2 = FdTable(files)
    c2.inherit(parent, [3, -1, 0])
    assert c2.get(0) is fs[3] and c2.get(2) is fs[0] and c2.open_fds() == [0, 2]


def test_inherit_of_a_closed_descriptor_counts_nothing():
    files = FileTable()
    parent = FdTable(files)
    f = new_file(files)
    parent.install(f)
    child = FdTable(files)
    with pytest.raises(Rv6Error) as ei:
        child.inherit(parent, [0, 7])
    assert ei.value.errno == errno.EBADF
    assert f.ref == 1 and child.open_fds() == []


def test_bad_descriptors_are_ebadf():
    t = FdTable(FileTable())
    for bad in (-1, 3, "0", True, 1 << 70):
        with pytest.raises(Rv6Error) as ei:
            t.get(bad)
        assert ei.value.errno == errno.EBADF


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.tuples(hs.sampled_from(["open", "dup", "dup2", "close", "fork", "exit"]),
                          hs.integers(0, 40), hs.integers(0, 40)), max_size=80))
def test_reference_counts_equal_the_descriptors_that_hold_them(ops):
    """After any sequence, each open file's ref is the number of slots holding it in all
    tables, and a file is in the global table iff some slot holds it."""
    files = FileTable()
    tables = [FdTable(files)]
    for op, i, j in ops:
        t = tables[i % len(tables)]
        open_fds = t.open_fds()
        try:
            if op == "open":
                t.install(new_file(files))
            elif op == "dup" and open_fds:
                t.dup(open_fds[j % len(open_fds)])
            elif op == "dup2" and open_fds:
                _new, prev = t.dup2(open_fds[j % len(open_fds)], j % 8)
                if prev is not None:
                    files.close(prev)
            elif op == "close" and open_fds:
                t.close(open_fds[j % len(open_fds)])
            elif op == "fork":
                c = FdTable(files)
                c.inherit(t, open_fds[: j % 6] or None)
                tables.append(c)
            elif op == "exit" and len(tables) > 1:
                t.close_all()
                tables.remove(t)
        except Rv6Error as e:
            assert e.errno == errno.EMFILE
        held: dict = {}
        for tb in tables:
            for f in tb.slots:
                if f is not None:
                    held[f] = held.get(f, 0) + 1
        assert set(held) == files.files
        assert all(f.ref == n for f, n in held.items())
