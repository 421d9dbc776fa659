"""Directories and path lookup."""

import errno
import os

import pytest
from hypothesis import given, settings, strategies as st

from redleaf.rv6.fs.dir import check_name
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.format import DIRENT_SIZE, DIRENTS_PER_BLOCK, ROOTINO, T_DIR
from redleaf.rv6.fs.path import split


def _errno(fn, *a, **k):
    with pytest.raises(FsError) as e:
        fn(*a, **k)
    return e.value.errno


def test_names_up_to_60_bytes_and_enametoolong_beyond(fs):
    ok = "n" * 60
    fs.mkdir("/" + ok)
    assert fs.stat("/" + ok).is_dir
    assert _errno(fs.mkdir, "/" + "n" * 61) == errno.ENAMETOOLONG
    assert _errno(fs.stat, "/" + "n" * 61) == errno.ENAMETOOLONG
    assert _errno(fs.open, "/" + "x" * 5000) == errno.ENAMETOOLONG
    assert _errno(check_name, b"") == errno.EINVAL
    # multi-byte UTF-8 counts in bytes
    assert _errno(fs.mkdir, "/" + "é" * 31) == errno.ENAMETOOLONG
    fs.mkdir("/" + "é" * 30)


def test_split_rules():
    assert split("/a//b/") == (True, [b"a", b"b"], True)
    assert split("a/./..") == (False, [b"a", b".", b".."], False)
    assert _errno(split, "") == errno.ENOENT
    assert _errno(split, "a\0b") == errno.EINVAL


def test_dot_dotdot_relative_and_cwd(fs):
    fs.mkdir("/a")
    fs.mkdir("/a/b")
    fd = fs.open("/a/b/f", 0o100 | 2)
    fs.close(fd)
    a = fs.lookup("/a")
    b = fs.lookup("b", cwd=a)
    assert fs.lookup("/a/b/../b/./f") == fs.lookup("f", cwd=b) == fs.lookup("../b/f", cwd=b)
    assert fs.lookup("/..") == fs.lookup("/../..") == ROOTINO
    assert fs.lookup("..", cwd=a) == ROOTINO
    assert _errno(fs.lookup, "/a/b/f/x") == errno.ENOTDIR
    assert _errno(fs.lookup, "/a/b/f/") == errno.ENOTDIR
    assert _errno(fs.lookup, "/a/nope/f") == errno.ENOENT
    assert _errno(fs.lookup, "x", cwd=fs.lookup("/a/b/f")) == errno.ENOTDIR
    assert _errno(fs.lookup, "x", cwd="/a") == errno.EINVAL
    assert _errno(fs.lookup, "x", cwd=10**9) == errno.EINVAL
    assert _errno(fs.lookup, 42) == errno.EINVAL


def test_directory_grows_past_a_block_reuses_slots_and_lists_everything(fs):
    n = DIRENTS_PER_BLOCK * 2 + 5
    for i in range(n):
        fs.mkdir(f"/d{i}") if i % 3 == 0 else fs.close(fs.open(f"/f{i}", 0o100 | 1))
    names = {e.name for e in fs.readdir("/")}
    assert len(names) == n + 2 and {".", ".."} <= names
    size = fs.stat("/").st_size
    assert size == (n + 2) * DIRENT_SIZE
    fs.unlink("/f1")
    fs.close(fs.open("/again", 0o100 | 1))
    assert fs.stat("/").st_size == size      # the freed slot was reused
    assert fs.stat("/").st_nlink == 2 + len([i for i in range(n) if i % 3 == 0])


def test_readdir_types_and_errors(fs):
    fs.mkdir("/d")
    fs.close(fs.open("/d/f", 0o100 | 1))
    fs.mknod("/d/tty", 0o020666, 4, 1)
    kinds = {e.name: e.type for e in fs.readdir("/d")}
    import stat
    assert kinds == {".": stat.S_IFDIR, "..": stat.S_IFDIR, "f": stat.S_IFREG, "tty": stat.S_IFCHR}
    assert _errno(fs.readdir, "/d/f") == errno.ENOTDIR
    assert _errno(fs.readdir, "/nope") == errno.ENOENT


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["create", "unlink", "mkdir", "rmdir", "rename", "link"]),
                          st.integers(0, 11), st.integers(0, 11), st.sampled_from(["/", "/d/", "/e/"])),
                max_size=60))
def test_the_name_index_equals_a_scan_of_the_blocks_after_any_operations(ops):
    """The per-directory name index (and its empty slots) is kept by add/set_inum/remove/
    init alone: after any mix of operations it equals what a fresh scan finds."""
    from redleaf.rv6.fs.dir import Dirs
    from redleaf.rv6.fs.fs import FileSystem

    from .conftest import Clock, new_disk

    fs = FileSystem(new_disk(), Clock())
    fs.mkdir("/d")
    fs.mkdir("/e")
    for op, a, b, where in ops:
        src, dst = f"{where}n{a}", f"/d/n{b}" if a % 2 else f"/e/m{b}"
        try:
            if op == "create":
                fs.close(fs.open(src, os.O_CREAT | os.O_WRONLY, 0o644))
            elif op == "unlink":
                fs.unlink(src)
            elif op == "mkdir":
                fs.mkdir(src)
            elif op == "rmdir":
                fs.rmdir(src)
            elif op == "rename":
                fs.rename(src, dst)
            else:
                fs.link(src, dst)
        except FsError:
            pass
    fresh = Dirs(fs.inodes)
    for inum, (names, free) in fs.dirs._ix.items():
        ip = fs.inodes.iget(inum)
        if ip.d.type != T_DIR:                       # a freed directory's inode, reused or not: never consulted
            continue
        want_names, want_free = fresh._index(ip)
        assert names == want_names
        assert sorted(free) == sorted(want_free) and free[0:1] == sorted(want_free)[0:1]
