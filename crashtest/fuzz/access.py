"""Fuzz target `access` (issue 18, section 3): another local user gets nothing.

A second, unprivileged user is created for the run (`useradd --system
--no-create-home redleaf-fuzz-PID`, removed afterwards whatever happens), and a child
forked from this process drops to it (setgroups([]), setgid, setuid: the same as
`setpriv --reuid --regid --clear-groups`, without exec'ing an interpreter the other
user may not be able to read).  As that user it attempts, against a running
instance owned by us:
connect to the control and event sockets, read the token, stat it, open the heap
file read-only and read-write, list the runtime directory and its parent, read the
supervisor's log, open a domain's doorbell FIFO, and signal the supervisor.
Each attempt must fail with PermissionError (EACCES/EPERM): *refused*.  One that
succeeds is a breach, and one that fails otherwise (the path missing) means the
check did not test what it meant to: both are *unclear*.  Also checked: the runtime
directory is 0700 and every regular file in it 0600 (sockets and FIFOs: no group or
other bits), the heap file 0600, all ours; and afterwards the instance runs, every
domain under its pid.

Needs root (to add a user and to drop to it).  Without it, `run` reports
`skipped` with the reason and counts nothing.

May call: supervisor.instance (run() starts its own instance), domains.paths.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import random
import socket
import stat
import subprocess

from .tally import Tally

MANIFEST = """
[heap]
size = "16MiB"
records = 8192

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
"""
ATTEMPTS = ("connect control", "connect events", "read token", "stat token", "open heap", "open heap rw",
            "list runtime dir", "list runtime root", "read supervisor log", "open doorbell",
            "signal supervisor")


class UserUnavailable(RuntimeError):
    """This machine will not let us add (or become) a second user: the check cannot run."""


@contextlib.contextmanager
def unprivileged_user():
    """(uid, gid) of a new system user with no home, removed on the way out."""
    if os.geteuid() != 0:
        raise UserUnavailable("adding a second user needs root; run as root to check access")
    name = f"redleaf-fuzz-{os.getpid()}"
    try:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserUnavailable(f"useradd could not run: {e}") from None
    if r.returncode:
        raise UserUnavailable(f"useradd refused: {r.stderr.strip() or r.returncode}")
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)
        # useradd made a group of the same name; userdel removes it, unless the
        # system is set up otherwise
        subprocess.run(["groupdel", name], capture_output=True, timeout=60)


def targets(inst) -> dict:
    """The paths and pids the attempts aim at (computed here, as the owner)."""
    p = inst.paths
    st = inst.status()
    did = st["echo"]["id"]
    return {"root": str(p.root), "control": p.control.removeprefix("ipc://"),
            "events": p.events.removeprefix("ipc://"), "token": str(p.token), "heap": str(p.heap),
            "log": str(p.log("supervisor")), "bell": str(p.bell(did)),
            "supervisor": inst.request("status")["pid"]}


def _attempt(name: str, t: dict) -> str:
    """Do one attempt (as the other user): 'refused: ...', 'ALLOWED: ...' or 'other: ...'."""
    try:
        if name.startswith("connect"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(t[name.split()[1]])
            finally:
                s.close()
        elif name == "read token":
            with open(t["token"], "rb") as f:
                f.read()
        elif name == "stat token":
            os.stat(t["token"])
        elif name.startswith("open heap"):
            os.close(os.open(t["heap"], os.O_RDWR if name.endswith("rw") else os.O_RDONLY))
        elif name == "list runtime dir":
            os.listdir(t["root"])
        elif name == "list runtime root":
            os.listdir(os.path.dirname(t["root"]))
        elif name == "read supervisor log":
            with open(t["log"], "rb") as f:
                f.read(1)
        elif name == "open doorbell":
            os.close(os.open(t["bell"], os.O_WRONLY | os.O_NONBLOCK))
        elif name == "signal supervisor":
            os.kill(t["supervisor"], 0)
        else:
            return f"other: unknown attempt {name!r}"
    except PermissionError as e:
        return f"refused: {errno.errorcode.get(e.errno, e.errno)}"
    except OSError as e:
        return f"other: {type(e).__name__}: {e}"
    return "ALLOWED"


def attempt_as(uid: int, gid: int, names: list[str], t: dict) -> list[str]:
    """Run the attempts in a child forked from here that has become uid/gid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if os.getuid() != uid or os.geteuid() != uid:
                raise RuntimeError("could not drop to the other user")
            out = [_attempt(n, t) for n in names]
            with os.fdopen(w, "w") as f:
                json.dump(out, f)
        except BaseException as e:
            try:
                os.write(w, json.dumps({"error": repr(e)}).encode())
            except OSError:
                pass
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    got = json.loads(data or "{}")
    if isinstance(got, dict):
        raise UserUnavailable(f"the child could not become uid {uid}: {got.get('error')}")
    return got


def loose_modes(inst) -> list[str]:
    """Files of the instance that someone besides us could use."""
    out = []
    me = os.getuid()
    for dp, _dns, fns in os.walk(inst.paths.root):
        for p in [dp] + [os.path.join(dp, f) for f in fns]:
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            ok = mode == 0o700 if stat.S_ISDIR(st.st_mode) else mode == 0o600 if stat.S_ISREG(st.st_mode) \
                else not mode & 0o077
            if not ok or st.st_uid != me:
                out.append(f"{p}: mode {mode:04o}, uid {st.st_uid}")
    st = os.lstat(inst.paths.heap)
    if stat.S_IMODE(st.st_mode) != 0o600 or st.st_uid != me:
        out.append(f"{inst.paths.heap}: mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}")
    return out


def fuzz(inst, uid: int, gid: int, count: int, seed: int, tally: Tally | None = None) -> Tally:
    tally = tally or Tally("access", seed)
    rng = random.Random(seed)
    before = {n: r["pid"] for n, r in inst.status().items()}
    t = targets(inst)
    names = list(ATTEMPTS) + [rng.choice(ATTEMPTS) for _ in range(max(0, count - len(ATTEMPTS)))]
    names = names[:count]
    for name, outcome in zip(names, attempt_as(uid, gid, names, t)):
        if outcome.startswith("refused"):
            tally.refuse(f"{name}: {outcome}", name)
        else:
            tally.confuse(f"{name} as uid {uid}: {outcome}")
    for problem in loose_modes(inst):
        tally.confuse(f"mode: {problem}")
        tally.inputs -= 1              # a mode check is not an attempt
    after = {n: r["pid"] for n, r in inst.status().items()}
    if after != before:
        tally.crash(f"domains changed: {before} -> {after}", counted=False)
    return tally


def run(count: int, seed: int) -> dict:
    from redleaf.supervisor.instance import Instance

    tally = Tally("access", seed)
    try:
        with unprivileged_user() as (uid, gid):
            inst = Instance(MANIFEST).start()
            try:
                fuzz(inst, uid, gid, count, seed, tally)
            finally:
                inst.stop()
                left = inst.leftovers()
                inst.cleanup_log()
    except UserUnavailable as e:
        return dict(tally.result(), skipped=str(e))
    if left:
        tally.crash(f"the instance left things behind: {left}", counted=False)
    return tally.result()
