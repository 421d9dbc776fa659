"""A hypothesis state machine of random operations against a model (a dict tree): the
file system equals the model after every step (errors included, by errno) and after
unmount + remount; fsck is clean at the end."""

import errno
import os
import posixpath

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.format import BSIZE, NDIRECT
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck_device

from .conftest import Clock, new_disk

NAMES = ["a", "b", "c"]
UNIVERSE = ["/" + "/".join(p) for n in (1, 2, 3)
            for p in __import__("itertools").product(NAMES, repeat=n)]
OFFSETS = st.one_of(st.integers(0, 3 * BSIZE), st.integers(NDIRECT * BSIZE - 100, NDIRECT * BSIZE + 100))


class Model:
    def __init__(self):
        self.dirs = {"/"}
        self.files: dict[str, int] = {}
        self.data: dict[int, bytearray] = {}
        self.next = 0

    def kind(self, p):
        return "dir" if p in self.dirs else "file" if p in self.files else None

    def parent_err(self, p):
        """The errno resolving p's parent gives, or None."""
        cur = ""
        for c in p.strip("/").split("/")[:-1]:
            cur += "/" + c
            k = self.kind(cur)
            if k is None:
                return errno.ENOENT
            if k == "file":
                return errno.ENOTDIR
        return None

    def children(self, d):
        pre = d.rstrip("/") + "/"
        return [p for p in list(self.dirs) + list(self.files)
                if p != d and p.startswith(pre) and "/" not in p[len(pre):]]

    def nlink(self, ino):
        return sum(1 for v in self.files.values() if v == ino)


class FsMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.disk = new_disk(nblocks=2048, inodes=64, log_blocks=129)
        self.clock = Clock()
        self.fs = self.mount()
        self.m = Model()

    def mount(self):
        return FileSystem(self.disk, self.clock)

    def expect(self, want, fn, *a):
        """Run fn; it must raise FsError(want) when want is an errno, succeed when None."""
        try:
            fn(*a)
        except FsError as e:
            assert e.errno == want, f"{fn.__name__}{a}: got {errno.errorcode[e.errno]}, model says {want and errno.errorcode[want]}"
            return False
        assert want is None, f"{fn.__name__}{a} succeeded; model says {errno.errorcode[want]}"
        return True

    def any_path(self, data, kinds=("dir", "file", None)):
        """Mostly a path whose parent exists (so operations succeed often enough to build
        a tree), sometimes any path of the universe (so the errors get exercised)."""
        near = [p for p in UNIVERSE if self.m.kind(p) in kinds
                and self.m.kind(posixpath.dirname(p)) == "dir"]
        if near and data.draw(st.integers(0, 9)) < 8:
            return data.draw(st.sampled_from(sorted(near)))
        return data.draw(st.sampled_from(UNIVERSE))

    @rule(data=st.data())
    def create(self, data):
        self._create(data)

    def _create(self, data):
        p = self.any_path(data, (None,))
        m = self.m
        want = m.parent_err(p) or (errno.EEXIST if m.kind(p) else None)
        if self.expect(want, lambda: self.fs.close(self.fs.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY))):
            m.files[p] = m.next
            m.data[m.next] = bytearray()
            m.next += 1
            return p

    @rule(data=st.data(), off=OFFSETS, payload=st.binary(min_size=1, max_size=2 * BSIZE + 10))
    def create_and_write(self, data, off, payload):
        p = self._create(data)
        if p:
            self.write(data, off, payload, p)

    @precondition(lambda self: self.m.files)
    @rule(data=st.data(), off=OFFSETS, payload=st.binary(min_size=1, max_size=2 * BSIZE + 10))
    def write(self, data, off, payload, p=None):
        p = p or data.draw(st.sampled_from(sorted(self.m.files)))
        fd = self.fs.open(p, os.O_RDWR)
        assert self.fs.pwrite(fd, payload, off) == len(payload)
        self.fs.close(fd)
        buf = self.m.data[self.m.files[p]]
        if len(buf) < off + len(payload):
            buf.extend(bytes(off + len(payload) - len(buf)))
        buf[off:off + len(payload)] = payload

    @precondition(lambda self: self.m.files)
    @rule(data=st.data(), size=OFFSETS)
    def truncate(self, data, size):
        p = data.draw(st.sampled_from(sorted(self.m.files)))
        self.fs.truncate(p, size)
        buf = self.m.data[self.m.files[p]]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))

    @rule(data=st.data())
    def mkdir(self, data):
        p = self.any_path(data, (None,))
        m = self.m
        want = m.parent_err(p) or (errno.EEXIST if m.kind(p) else None)
        if self.expect(want, self.fs.mkdir, p):
            m.dirs.add(p)

    @precondition(lambda self: len(self.m.dirs) > 1)
    @rule(data=st.data())
    def rmdir(self, data):
        p = self.any_path(data, ("dir",))
        m = self.m
        k = m.kind(p)
        want = m.parent_err(p) or (errno.ENOENT if k is None else errno.ENOTDIR if k == "file"
                                   else errno.ENOTEMPTY if m.children(p) else None)
        if self.expect(want, self.fs.rmdir, p):
            m.dirs.discard(p)

    @precondition(lambda self: self.m.files)
    @rule(data=st.data())
    def unlink(self, data):
        p = self.any_path(data, ("file",))
        m = self.m
        k = m.kind(p)
        want = m.parent_err(p) or (errno.ENOENT if k is None else errno.EISDIR if k == "dir" else None)
        if self.expect(want, self.fs.unlink, p):
            ino = m.files.pop(p)
            if not m.nlink(ino):
                del m.data[ino]

    @precondition(lambda self: self.m.files)
    @rule(data=st.data())
    def link(self, data):
        src = self.any_path(data, ("file",))
        dst = self.any_path(data, (None,))
        m = self.m
        ks = m.kind(src)
        want = (m.parent_err(src) or (errno.ENOENT if ks is None else None)
                or (errno.EPERM if ks == "dir" else None)
                or m.parent_err(dst) or (errno.EEXIST if m.kind(dst) else None))
        if self.expect(want, self.fs.link, src, dst):
            m.files[dst] = m.files[src]

    @precondition(lambda self: self.m.files or len(self.m.dirs) > 1)
    @rule(data=st.data())
    def rename(self, data):
        src = self.any_path(data, ("file", "dir"))
        dst = self.any_path(data)
        m = self.m
        ks, kd = m.kind(src), m.kind(dst)
        same = src == dst or (ks == "file" and kd == "file" and m.files[src] == m.files[dst])
        want = (m.parent_err(src) or m.parent_err(dst) or (errno.ENOENT if ks is None else None)
                or (errno.EINVAL if ks == "dir" and dst.startswith(src + "/") else None)
                or (None if same else
                    errno.ENOTDIR if ks == "dir" and kd == "file" else
                    errno.EISDIR if ks == "file" and kd == "dir" else
                    errno.ENOTEMPTY if kd == "dir" and m.children(dst) else None))
        if not self.expect(want, self.fs.rename, src, dst) or same:
            return
        if kd == "file":
            ino = m.files.pop(dst)
            if not m.nlink(ino):
                del m.data[ino]
        m.dirs.discard(dst)
        if ks == "file":
            m.files[dst] = m.files.pop(src)
        else:
            moved = {p for p in m.dirs if p == src or p.startswith(src + "/")}
            mfiles = {p: v for p, v in m.files.items() if p.startswith(src + "/")}
            m.dirs -= moved
            m.dirs |= {dst + p[len(src):] for p in moved}
            for p in mfiles:
                del m.files[p]
            m.files.update({dst + p[len(src):]: v for p, v in mfiles.items()})

    @rule()
    def remount(self):
        self.fs.unmount()
        self.fs = self.mount()
        assert self.fs.recovered == 0 and self.fs.orphans_freed == 0

    @invariant()
    def equals_model(self):
        fs, m = self.fs, self.m
        dirs, files = {"/"}, {}
        stack = ["/"]
        while stack:
            d = stack.pop()
            for e in fs.readdir(d):
                if e.name in (".", ".."):
                    continue
                p = posixpath.join(d, e.name)
                if fs.stat(p).is_dir:
                    dirs.add(p)
                    stack.append(p)
                    assert fs.stat(p).st_nlink == 2 + sum(1 for c in m.children(p) if c in m.dirs)
                else:
                    files[p] = e.ino
        assert dirs == m.dirs
        assert set(files) == set(m.files)
        for p, ino in files.items():
            same = {q for q in files if files[q] == ino}
            assert same == {q for q in m.files if m.files[q] == m.files[p]}
            st_ = fs.stat(p)
            assert st_.st_nlink == len(same) and st_.st_size == len(m.data[m.files[p]])
            fd = fs.open(p)
            assert fs.read(fd, 1 << 24) == bytes(m.data[m.files[p]]), p
            fs.close(fd)

    def teardown(self):
        self.fs.unmount()
        rep = fsck_device(self.disk)
        assert rep.problems == [], rep.problems


FsMachine.TestCase.settings = settings(max_examples=int(os.environ.get("RV6_MODEL_EXAMPLES", "25")),
                                       stateful_step_count=30, deadline=None)
TestFsModel = FsMachine.TestCase


class TightMachine(FsMachine):
    """The same under memory pressure: a cache just over one transaction (evictions while
    buffers are pinned) and an inode table of 4 (inodes dropped and read again)."""

    def mount(self):
        fs = FileSystem(self.disk, self.clock, cache_blocks=128 + 16)
        fs.inodes.ITABLE_MAX = 4
        return fs


TightMachine.TestCase.settings = settings(max_examples=int(os.environ.get("RV6_MODEL_EXAMPLES", "15")),
                                          stateful_step_count=30, deadline=None)
TestFsModelTight = TightMachine.TestCase
