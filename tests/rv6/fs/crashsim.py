"""CrashMonkey-style crash simulation for the fs layers (a helper of test_crash.py).

A workload runs on a MemDisk that records every block write and flush. A crash state is
a prefix of that stream ending at a flush (all of it persisted) plus any subset of the
writes issued after that flush and before the next (a device may persist those in any
order). For each state we build the image, check it with fsck (the log replayed in an
overlay), mount it (recovery and orphan cleanup run), walk the tree and compare:

- the tree equals, exactly, the tree of the last commit whose commit point (a log header
  naming blocks) is among the persisted writes; so every directory is in a state that
  existed at a commit, and nothing half-done shows;
- every file fsync'd before the crash point, and not changed since, has its fsync'd content;
- fsck is clean after the mount.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field

from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.format import Superblock, unpack_log_header
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck_device
from redleaf.rv6.fs.mkfs import mkfs_device


def tree(fs: FileSystem) -> dict:
    """{path: "dir" | (content, nlink)} of the whole tree."""
    out = {"/": "dir"}
    stack = ["/"]
    while stack:
        d = stack.pop()
        for e in fs.readdir(d):
            if e.name in (".", ".."):
                continue
            p = d.rstrip("/") + "/" + e.name
            s = fs.stat(p)
            if s.is_dir:
                out[p] = "dir"
                stack.append(p)
            else:
                fd = fs.open(p)
                out[p] = (fs.read(fd, s.st_size + 1), s.st_nlink)
                fs.close(fd)
    return out


class _Clock:
    def __init__(self):
        self.c = itertools.count(10**18, 1000)

    def __call__(self):
        return next(self.c)


@dataclass
class Recording:
    nblocks: int
    base: dict
    events: list
    fsyncs: list = field(default_factory=list)          # (event index, path, content)
    changes: dict = field(default_factory=dict)         # path -> [event index when changed]
    live_at_fsync: list = field(default_factory=list)   # (event index, tree)


class Recorder:
    """What a workload calls around the fs so the checker knows what was promised."""

    def __init__(self, fs: FileSystem, disk: MemDisk, rec: Recording):
        self.fs, self.disk, self.rec = fs, disk, rec

    def changing(self, *paths: str) -> None:
        for p in paths:
            self.rec.changes.setdefault(p, []).append(len(self.disk.events))

    def fsync(self, fd: int, path: str) -> None:
        self.fs.fsync(fd)
        n = len(self.disk.events)
        st = self.fs.fstat(fd)
        self.rec.fsyncs.append((n, path, self.fs.pread(fd, st.st_size + 1, 0)))
        self.rec.live_at_fsync.append((n, tree(self.fs)))


def record(workload, nblocks=1024, inodes=64, log_blocks=65, seed=0) -> Recording:
    disk = MemDisk(nblocks)
    mkfs_device(disk, inodes=inodes, log_blocks=log_blocks, now_ns=1, zeroed=True)
    disk.events = []
    base = disk.start_recording()
    fs = FileSystem(disk, _Clock())
    rec = Recording(nblocks, base, disk.events)
    workload(fs, Recorder(fs, disk, rec), random.Random(seed))
    fs.unmount()
    return rec


@dataclass
class Result:
    states: int = 0
    checked_fsyncs: int = 0
    commits: int = 0
    seconds: float = 0.0


def crash_states(rec: Recording, subsets_per_window: int, rng: random.Random):
    """(upto, extra write indices) for every flush-ended prefix and subsets of the
    writes after it."""
    ev = rec.events
    flushes = [i for i, e in enumerate(ev) if e[0] == "f"]
    starts = [0] + [f + 1 for f in flushes]
    for k, upto in enumerate(starts):
        end = flushes[k] if k < len(flushes) else len(ev)
        window = [i for i in range(upto, end) if ev[i][0] == "w"]
        seen = {()}
        yield upto, ()
        picks = [(i,) for i in window[:8]]
        if window:
            picks.append(tuple(window))
        for _ in range(subsets_per_window):
            if window:
                picks.append(tuple(sorted(rng.sample(window, rng.randint(1, len(window))))))
        for p in picks:
            if p not in seen:
                seen.add(p)
                yield upto, p


def check(rec: Recording, subsets_per_window: int = 2, seed: int = 0, limit: int | None = None) -> Result:
    t0 = time.monotonic()
    rng = random.Random(seed)
    sb = Superblock.unpack(rec.base[1], rec.nblocks)
    ev = rec.events
    # the commit points, and the tree each commit leaves (mounting right after it)
    commits = [i for i, e in enumerate(ev) if e[0] == "w" and e[1] == sb.logstart
               and unpack_log_header(e[2], sb)]
    trees = []
    for upto in [0] + [h + 1 for h in commits]:
        fs = FileSystem(MemDisk(rec.nblocks, MemDisk.crash_image(rec.base, ev, upto)), _Clock())
        trees.append(tree(fs))
    # what the live fs showed at each fsync is what the commit after it holds
    for n, live in rec.live_at_fsync:
        j = sum(1 for h in commits if h < n)
        assert trees[j] == live, f"commit {j} (durable at fsync, event {n}) differs from the live tree"
    res = Result(commits=len(commits))
    for upto, extra in crash_states(rec, subsets_per_window, rng):
        if limit is not None and res.states >= limit:
            break
        img = MemDisk.crash_image(rec.base, ev, upto, extra)
        persisted = set(range(upto)) | set(extra)
        where = f"crash after event {upto} + {list(extra)}"
        raw = MemDisk(rec.nblocks, img)
        before = fsck_device(raw)
        assert before.clean, f"{where}: fsck before mount: {before.errors}"
        disk = MemDisk(rec.nblocks, img)
        fs = FileSystem(disk, _Clock())
        got = tree(fs)
        j = sum(1 for h in commits if h in persisted)
        assert got == trees[j], f"{where}: the tree is not that of commit {j}"
        last = max(persisted, default=-1)
        for n, path, content in rec.fsyncs:
            later = [c for c in rec.changes.get(path, []) if c >= n]
            if n <= upto and (not later or min(later) > last):
                assert got.get(path, (None,))[0] == content, f"{where}: fsync'd {path} lost its content"
                res.checked_fsyncs += 1
        fs.unmount()
        after = fsck_device(disk)
        assert after.problems == [], f"{where}: fsck after mount: {after.problems}"
        res.states += 1
    res.seconds = time.monotonic() - t0
    return res
