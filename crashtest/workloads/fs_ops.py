"""`fs-ops`: file operations through Rv6's fs domain (rv6fs) on the NVMe driver behind
its shadow, every byte checked against a model of what was acknowledged.

The instance: the NVMe device, its driver and shadow (nvme0), and rv6fs on a fresh
image in the workload's tmpdir (formatted at the first mount, no programs).  The
namespace is a few fixed slots: two top directories, four file slots in each, a
scratch directory in each.  A round is one operation on them: create, overwrite,
append, pwrite, truncate, rename (onto a free slot or over a file), unlink, mkdir,
rmdir, or a verification (stat and fstat sizes, every byte read back).  Every byte
written is a function of (path, version), the version growing with each operation,
and each mutating round ends with `sync`, so what a round did is durable once its
sync returned.

The model (FsModel, pure, tested without processes) keeps the state of every slot as
of the last acknowledged round.  A round whose calls failed, or whose fs incarnation
changed under it (the client reconnects silently after a restart, so each call is
checked to have gone through the same channel), may have left any prefix of its steps
on the disk: the fs commits its log in order, and whatever it had not committed when
it died is gone.  Those candidate states are kept as the `uncertain` set, and the next
round reads the slots back and settles them: the state read must be one of the
candidates, or it is a violation.

Errors: none at all when the target is the driver (nvme0.driver) or the device
(nvme0-dev): the shadow hides them.  When rv6fs itself is hit, or the shadow nvme0
(rv6fs panics on its failed call and restarts), the outage errors of base.py and the
fs's EBADF for a descriptor of the dead incarnation (descriptors live in the fs
domain's memory; a restarted fs has an empty table) are expected; the round is given
up and the next one opens its files again.  At the end every slot is read back once
more, and the image (a copy, taken once the fs is synced and idle) must check clean
with rv6/fs/fsck.py.

May call: domains (attach, errors, channel states), drivers (nvme manifests), rv6
(FileSystem interface, FsError, fsck), shared_heap.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat as st
import threading
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from .base import OUTAGE_ERRORS, Recorder, Workload
from .nvme_rw import shadowed_nvme_manifest

FS = "rv6fs"
SHADOW = "nvme0"
#: the targets whose fault the client may see: the fs, and the shadow it calls (whose
#: death the fs does not survive: it panics and restarts)
VISIBLE = (FS, SHADOW)
#: the stale-descriptor error's kind, as recorded
EBADF_KIND = "FsError(EBADF)"
TOPS = ("/a", "/b")
SCRATCH = ("/a/s", "/b/s")
FILES = tuple(f"{d}/f{i}" for d in TOPS for i in range(4))
#: a file never grows past this: appends turn into overwrites (reads stay one call)
MAX_FILE = 48 * 1024
#: write sizes: a byte, part of a block, a block, more than a block, three and a bit
#: (each stays one log operation: file.py splits only writes of more than 26 blocks)
WRITE_SIZES = (1, 100, 4096, 5000, 3 * 4096 + 7)
DIR = "<dir>"  # a slot's state: None (absent), bytes (a file's contents), or DIR
PAUSE_AFTER_ERROR_S = 0.002

# bdev_deadline_s: rv6fs takes a hung shadow for hung after 15 s (its default, 20 s, is
# for any device; the NVMe shadow replaces a hung driver in its driver_deadline_s,
# 10 s), so a hang costs a campaign less
FS_DOMAIN = """
[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.005
backoff_max_s = 0.05
uses = ["nvme0"]
config = { bdev = "nvme0", mkfs_if_blank = true, install_programs = false, cache_mb = 4, bdev_deadline_s = 15.0 }
"""


def content(path: str, version: int, n: int) -> bytes:
    """The n bytes an operation of `version` writes to `path`."""
    rng = np.random.default_rng([zlib.crc32(path.encode()), version])
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def describe(state) -> str:
    if state is None:
        return "absent"
    if state == DIR:
        return "a directory"
    return f"a file of {len(state)} bytes (crc {zlib.crc32(state):08x})"


@dataclass
class Op:
    """One round's operation: its kind, the slots it touches, and the states of those
    slots after each of its mutating steps (worlds[0] is before the first)."""

    kind: str
    args: dict
    worlds: list[dict] = field(default_factory=list)


class FsModel:
    """What the client knows of the slots: a certain state for each, and, after a round
    that may or may not have happened (in part), the candidate states of what it touched."""

    def __init__(self):
        self.state: dict[str, object] = {p: None for p in TOPS + SCRATCH + FILES}
        self.uncertain: list[dict] | None = None  # candidate worlds of the touched slots
        self.version = 0
        self.counts = {"acknowledged": 0, "interrupted": 0, "settled": 0, "checked": 0}

    # -- planning (pure: the rng and the state decide) ------------------------------------
    def plan(self, rng: random.Random) -> Op:
        s = self.state
        missing = [d for d in TOPS if s[d] is None]
        if missing:
            return self._op("mkdir", path=missing[0])
        files = [p for p in FILES if isinstance(s[p], bytes)]
        free = [p for p in FILES if s[p] is None]
        choices = ["verify"] * 3
        if free:
            choices += ["create"] * 3
        if files:
            choices += ["overwrite", "append", "append", "pwrite", "truncate", "rename", "unlink"]
        choices += ["mkdir" if s[d] is None else "rmdir" for d in SCRATCH]
        kind = rng.choice(choices)
        self.version += 1
        size = rng.choice(WRITE_SIZES)
        if kind == "verify":
            return Op("verify", {"path": rng.choice(FILES + SCRATCH)})
        if kind == "create":
            return self._op("create", path=rng.choice(free), size=size)
        if kind in ("mkdir", "rmdir"):
            return self._op(kind, path=rng.choice([d for d in SCRATCH if (s[d] is None) == (kind == "mkdir")]))
        path = rng.choice(files)
        old = s[path]
        if kind == "append" and len(old) + size > MAX_FILE:
            kind = "overwrite"
        if kind == "pwrite":
            return self._op("pwrite", path=path, size=size, offset=rng.randrange(len(old) + 4096))
        if kind == "truncate":
            return self._op("truncate", path=path, length=rng.randrange(min(MAX_FILE, 2 * len(old) + 4096)))
        if kind == "rename":
            others = [p for p in FILES if p != path]
            return self._op("rename", path=path, to=rng.choice(others))  # to a free slot, or over a file
        if kind == "unlink":
            return self._op("unlink", path=path)
        return self._op(kind, path=path, size=size)

    def _op(self, kind: str, **args) -> Op:
        """The op with its worlds: the touched slots' states after each mutating call."""
        s, v = self.state, self.version
        p = args["path"]
        op = Op(kind, args)
        w = [{p: s[p]}]
        if kind == "mkdir":
            w.append({p: DIR})
        elif kind == "rmdir":
            w.append({p: None})
        elif kind in ("create", "overwrite"):
            w += [{p: b""}, {p: content(p, v, args["size"])}]  # open(O_CREAT|O_EXCL or O_TRUNC), write
        elif kind == "append":
            w.append({p: s[p] + content(p, v, args["size"])})
        elif kind == "pwrite":
            old, off, data = s[p], args["offset"], content(p, v, args["size"])
            new = old.ljust(off, b"\0")[:off] + data + old[off + len(data):]
            w.append({p: new})
        elif kind == "truncate":
            n = args["length"]
            w.append({p: s[p][:n].ljust(n, b"\0")})
        elif kind == "rename":
            q = args["to"]
            w = [{p: s[p], q: s[q]}, {p: None, q: s[p]}]
        elif kind == "unlink":
            w.append({p: None})
        op.worlds = w
        return op

    # -- outcomes ----------------------------------------------------------------------------
    def acknowledged(self, op: Op) -> None:
        """Every call of the op and its sync returned, on one fs incarnation."""
        self.state.update(op.worlds[-1])
        self.counts["acknowledged"] += 1

    def interrupted(self, op: Op, attempted: int) -> None:
        """The op's calls stopped after `attempted` mutating steps were tried (the last
        may or may not have happened), or the fs restarted under it: any of the states
        up to there may be on the disk (the log commits in order)."""
        worlds = op.worlds[:attempted + 1] if attempted < len(op.worlds) else op.worlds
        self.uncertain = [dict(w) for w in worlds]
        self.counts["interrupted"] += 1

    def settle(self, seen: dict) -> str | None:
        """The touched slots as read back after an interrupted op: a problem if that is
        none of the candidates; else the model takes it as the state."""
        cands = self.uncertain or []
        self.counts["settled"] += 1
        if any(all(c.get(p) == seen.get(p) for p in seen) for c in cands):
            self.state.update(seen)
            self.uncertain = None
            return None
        want = " or ".join("{" + ", ".join(f"{p}: {describe(x)}" for p, x in sorted(c.items())) + "}"
                           for c in cands)
        got = ", ".join(f"{p}: {describe(x)}" for p, x in sorted(seen.items()))
        self.uncertain = None
        self.state.update(seen)  # judged once; go on from what is there
        return f"after an interrupted operation the fs holds {{{got}}}; expected one of {want}"

    def check(self, path: str, seen) -> str | None:
        """A slot read back while its state is certain."""
        want = self.state[path]
        self.counts["checked"] += 1
        if seen == want:
            return None
        msg = f"{path} reads back as {describe(seen)}, expected {describe(want)}"
        if isinstance(seen, bytes) and isinstance(want, bytes):
            n = min(len(seen), len(want))
            diff = next((i for i in range(n) if seen[i] != want[i]), n)
            msg += f" (first difference at byte {diff})"
        self.state[path] = seen
        return msg

    def touched_slots(self) -> list[str]:
        return sorted({p for w in self.uncertain or [] for p in w})


class _Interrupted(Exception):
    """The round cannot go on: a call failed, or the fs restarted under it."""


class FsOpsWorkload(Workload):
    name = "fs-ops"
    targets = "rv6fs,nvme0*"
    methods = {FS: ("open", "write", "pwrite", "pread", "close", "truncate", "rename", "sync", "stat"),
               SHADOW: ("submit_and_poll", "flush"), f"{SHADOW}.driver": ("submit_and_poll", "flush")}
    deadline_s = 30.0  # FileSystem's interface deadline
    joinable = False
    joinable_why = ("boots an fs on an image of its own and expects only its files there: on a running "
                    "instance it would scribble over a user's fs")

    def __init__(self, tmpdir: str):
        super().__init__(tmpdir)
        self.model = FsModel()
        self.seed = 0
        self.image = os.path.join(tmpdir, "nvme0.img")

    def manifest(self) -> str:
        return shadowed_nvme_manifest(self.image, "16MiB") + FS_DOMAIN

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        return (kind in OUTAGE_ERRORS or kind == EBADF_KIND) and bool(targets & set(VISIBLE))

    # -- calls -----------------------------------------------------------------------------------
    def _channel(self):
        from redleaf.domains import channel as chan

        link = self.fs._rl_link
        ch = link.ch
        return None if link.broken or ch is None or ch.state != chan.OPEN else ch

    def _call(self, what: str, fn, *args, allow: tuple[int, ...] = ()):
        """One call of the round: recorded; an error or a change of fs incarnation since
        the round's first call ends the round (_Interrupted).  An FsError whose errno is
        in `allow` is an answer, returned."""
        from redleaf.rv6.fs.errors import FsError

        if self.ch0 is not None and self._channel() is not self.ch0:
            raise _Interrupted  # the fs restarted between calls: our descriptors are gone
        try:
            with self.rec.call(what, self.deadline_s) as c:
                v = fn(*args)
        except FsError as e:
            if e.errno in allow:
                v = e
            else:
                self.rec.error(f"FsError({errno.errorcode.get(e.errno, e.errno)})", f"{what}: {e}")
                raise _Interrupted from None
        if c.failed:
            raise _Interrupted
        ch = self._channel()
        if self.ch0 is None:
            self.ch0 = ch
        if ch is None or ch is not self.ch0:
            raise _Interrupted
        return v

    def _vec(self, data: bytes):
        v = self.heap.alloc_vec(np.uint8, max(1, len(data)))
        v.np[:len(data)] = np.frombuffer(data, np.uint8)
        return v

    def _read_slot(self, path: str):
        """A slot's state as the fs has it: None, DIR, or the file's bytes (stat and
        fstat sizes checked against what was read)."""
        from redleaf.rv6.fs.errors import FsError
        from redleaf.rv6.fs_interface import STAT_FIELDS

        size_at = STAT_FIELDS.index("st_size")
        t = self._call("FileSystem.stat", self.fs.stat, path, allow=(errno.ENOENT,))
        if isinstance(t, FsError):
            return None
        if st.S_ISDIR(t[1]):
            return DIR
        size = t[size_at]
        fd = self._call("FileSystem.open", self.fs.open, path, os.O_RDONLY, 0)
        self.fd = fd
        fsize = self._call("FileSystem.fstat", self.fs.fstat, fd)[size_at]
        buf = self.heap.alloc_vec(np.uint8, max(1, size) + 1)
        try:
            n, buf = self._call("FileSystem.pread", self.fs.pread, fd, buf, size + 1, 0)
            data = bytes(buf.np[:n])
        finally:
            if buf.alive:
                buf.drop()
        self.fd = None
        self._call("FileSystem.close", self.fs.close, fd)
        if fsize != size or len(data) != size:
            self.rec.problem(f"{path}: stat says {size} bytes, fstat {fsize}, a read returned {len(data)}")
        return data

    def _run_op(self, op: Op) -> int:
        """The op's calls; returns how many mutating steps were tried (for interrupted())."""
        fs, a, p = self.fs, op.args, op.args["path"]
        self.steps = 0

        def step(what, fn, *args):
            self.steps += 1
            return self._call(what, fn, *args)

        if op.kind in ("mkdir", "rmdir"):
            step(f"FileSystem.{op.kind}", getattr(fs, op.kind), p, *((0o755,) if op.kind == "mkdir" else ()))
        elif op.kind in ("create", "overwrite", "append", "pwrite"):
            flags = {"create": os.O_CREAT | os.O_EXCL | os.O_WRONLY, "overwrite": os.O_WRONLY | os.O_TRUNC,
                     "append": os.O_WRONLY | os.O_APPEND, "pwrite": os.O_RDWR}[op.kind]
            if op.kind in ("create", "overwrite"):
                self.fd = step("FileSystem.open", fs.open, p, flags, 0o644)
            else:
                self.fd = self._call("FileSystem.open", fs.open, p, flags, 0o644)
            data = content(p, self.model.version, a["size"])
            v = self._vec(data)
            try:
                if op.kind == "pwrite":
                    n = step("FileSystem.pwrite", fs.pwrite, self.fd, v, len(data), a["offset"])
                else:
                    n = step("FileSystem.write", fs.write, self.fd, v, len(data))
            finally:
                v.drop()
            if n != len(data):
                self.rec.problem(f"{op.kind} {p}: wrote {n} of {len(data)} bytes")
            fd, self.fd = self.fd, None
            self._call("FileSystem.close", fs.close, fd)
        elif op.kind == "truncate":
            step("FileSystem.truncate", fs.truncate, p, a["length"])
        elif op.kind == "rename":
            step("FileSystem.rename", fs.rename, p, a["to"])
        elif op.kind == "unlink":
            step("FileSystem.unlink", fs.unlink, p)
        self._call("FileSystem.sync", fs.sync)
        return self.steps

    def _settle(self) -> None:
        seen = {p: self._read_slot(p) for p in self.model.touched_slots()}
        problem = self.model.settle(seen)
        if problem:
            self.rec.problem(problem)

    def _round(self, op: Op | None) -> bool:
        """One round on one fs incarnation; False if it was cut short."""
        self.ch0, self.fd, self.steps = None, None, 0
        try:
            if op is None:
                self._settle()
            elif op.kind == "verify":
                problem = self.model.check(op.args["path"], self._read_slot(op.args["path"]))
                if problem:
                    self.rec.problem(problem)
            else:
                self._run_op(op)
                self.model.acknowledged(op)
            return True
        except _Interrupted:
            if op is not None and op.kind != "verify":
                self.model.interrupted(op, self.steps)
            return False
        finally:
            if self.fd is not None and self.ch0 is not None and self._channel() is self.ch0:
                try:  # a descriptor of this incarnation left open by a failed call: give it back
                    self.fs.close(self.fd)
                except Exception:  # noqa: BLE001 - its error was recorded already; the fd is gone either way
                    pass

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        from redleaf.domains import attach
        from redleaf.rv6.fs_interface import FileSystem

        rng = random.Random(self.seed)
        with attach(instance) as d:
            self.fs = d.lookup(FS, FileSystem)
            self.heap = d.heap
            while not stop.is_set():
                self.gate()
                ok = self._round(None if self.model.uncertain else self.model.plan(rng))
                if not ok:
                    time.sleep(PAUSE_AFTER_ERROR_S)
            self.final = self._read_back()

    def _read_back(self) -> list[str]:
        """Settle, then read every slot once more (wrong contents go to rec.problems);
        a read that fails is returned.  The fs is synced and idle afterwards, so its
        image can be checked."""
        for _ in range(50):  # the fs may still be coming back from the campaign's last fault
            if not self.model.uncertain or self._round(None):
                break
            time.sleep(0.1)
        else:
            return ["the final read-back could not settle the last interrupted operation"]
        self.ch0, self.fd = None, None
        try:
            for p in self.model.state:
                problem = self.model.check(p, self._read_slot(p))
                if problem:
                    self.rec.problem(problem)
            self._call("FileSystem.sync", self.fs.sync)
        except _Interrupted:
            last = self.rec.errors[-1] if self.rec.errors else None
            return ["the final read-back failed: " + (f"{last[1]}: {last[2]}" if last else "the fs restarted under it")]
        return []

    def final_problems(self) -> list[str]:
        out = list(getattr(self, "final", ["the final read-back did not run (the loop ended early)"]))
        if out:
            return out
        return out + self._fsck()

    def _fsck(self) -> list[str]:
        """fsck of a copy of the image: the fs is idle and synced, so what is in the
        file is what a crash of everything now would leave."""
        from redleaf.rv6.fs.fsck import fsck

        copy = os.path.join(self.tmpdir, "fsck-copy.img")
        try:
            shutil.copyfile(self.image, copy)
            errors = [p for p in fsck(copy) if p.severity == "error"]
        finally:
            if os.path.exists(copy):
                os.unlink(copy)
        return [f"fsck of the image after the campaign: {p}" for p in errors[:10]]
