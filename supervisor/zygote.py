"""The fork server: a warm process that forks domains so a load costs a fork, not an
interpreter start and a round of imports.

The supervisor forks the zygote once at start-up, before it creates any zmq context
(zmq contexts do not survive fork).  The zygote imports the runtime, then serves
requests on a SOCK_SEQPACKET socketpair, each tagged with the supervisor's request
id ``req``:

  {"req": n, "spec": {...}}            fork a domain or device; reply {"spawned": pid, "req": n}
  {"req": n, "probe": {target, path, log}}
                                       fork a probe that imports target; reply {"spawned": pid,
                                       "req": n}; the probe itself sends {"probe": n, "shadow"
                                       | "error": ...} and exits

Groups (DESIGN §7a, `group = "NAME"` in the manifest): a spec with a `group` goes
to that group's host process, forked on the group's first spec with a socketpair of
its own; later specs of the group are forwarded over that socketpair and answered
with the host's pid.  The host reports a member that ended on its own (a panic, a
clean stop) as {"member_exit": id, "code": c}; the zygote forwards it as
{"exit_member": id, "pid": host pid, "code": c} only for an id it sent that host,
so a group host can speak only for its own members.  The supervisor's per-member
requests ({"member": {"domain_id", "op": "stop" | "fault", "how"}}, unanswered) go
the same way, to the host of that id.

It is the parent of every domain, so it reaps them on SIGCHLD and reports each exit
status ({"exit": pid, "code": c}) at once: that report is the supervisor's death
notification.  Each child leads its own process group; before reaping a child the
zygote kills that group, so whatever a domain forked dies with it (the group id
cannot be reused while the dead leader is unreaped).

Owns: the fork server process.  Calls domains.host / domains.device_host (in the
forked child) and supervisor.probe (in a probe child); never domain code itself (it only
imports the modules of this project's own targets, see _warm).

Warm forks: the zygote imports the runtime before its first fork, and the module of each
target of ours it has spawned once (`_warm`), so a restart or the next program forks
with its code already imported.

Lifetime: the zygote dies with the supervisor (PR_SET_PDEATHSIG), and every domain
dies with the zygote, so no domain outlives a killed supervisor.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import socket
import sys
import traceback

import msgpack

PR_SET_PDEATHSIG = 1
LOG_ROTATE_BYTES = 4 << 20
LOG_KEEP = 3


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def rotate_log(path: str) -> None:
    try:
        if os.path.getsize(path) < LOG_ROTATE_BYTES:
            return
    except OSError:
        return
    for i in range(LOG_KEEP - 1, 0, -1):
        src = f"{path}.{i}"
        if os.path.exists(src):
            os.replace(src, f"{path}.{i + 1}")
    os.replace(path, f"{path}.1")


#: process titles name the instance and the process ("redleaf:default/nvme0.driver"),
#: so `ps` and `top` tell domains apart; set by start_zygote
_instance = "?"


def set_instance(name: str) -> None:
    global _instance
    _instance = name


def set_title(what: str) -> None:
    """Name this process `redleaf:<instance>/<what>` in ps (its /proc cmdline)."""
    try:
        import setproctitle

        setproctitle.setproctitle(f"redleaf:{_instance}/{what}")
    except ImportError:  # a title is a convenience; never a reason to fail a start
        pass


class _Stamped:
    """A domain's stdout/stderr: every line of its log starts with a timestamp (UTC,
    ms), the supervisor's notes about it included, so a log reads as one timeline."""

    def __init__(self, raw):
        self.raw = raw
        self.at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        import datetime

        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z "
        out = []
        for part in text.splitlines(keepends=True):
            if self.at_line_start:
                out.append(stamp)
            out.append(part)
            self.at_line_start = part.endswith("\n")
        self.raw.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def __getattr__(self, name):
        return getattr(self.raw, name)


def _become_child(parent_pid: int, log: str) -> None:
    """The first steps of any forked child: die with the zygote, lead its own process
    group, default signals, stdio to its log."""
    set_pdeathsig()
    if os.getppid() != parent_pid:
        os._exit(1)
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.setpgid(0, 0)
    rotate_log(log)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(devnull)
    sys.stdout = _Stamped(os.fdopen(1, "w", buffering=1, closefd=False))
    sys.stderr = _Stamped(os.fdopen(2, "w", buffering=1, closefd=False))


def _child(sock: socket.socket, spec: dict, parent_pid: int, group_sock: socket.socket | None = None,
           others: tuple = ()) -> None:
    """In the forked child: become the domain (or the host of its group)."""
    code = 0
    try:
        sock.close()
        for s in others:  # other groups' sockets: not this child's to hold
            s.close()
        if group_sock is not None:
            _become_child(parent_pid, spec["group_log"])
            set_title(f"group {spec.get('group')}")
            from redleaf.domains.group import main as entry

            code = entry(spec, group_sock) or 0
        else:
            _become_child(parent_pid, spec["log"])
            set_title(spec.get("name", "domain"))
            if spec.get("kind") == "device":
                from redleaf.domains.device_host import main as entry
            else:
                from redleaf.domains.host import main as entry
            code = entry(spec) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


def _probe_child(sock: socket.socket, req: int, probe: dict, parent_pid: int) -> None:
    """In a forked child: import the target and send what it says straight to the
    supervisor (the socket is shared; a SEQPACKET message is atomic)."""
    code = 0
    try:
        _become_child(parent_pid, probe["log"])
        set_title(f"probe {probe['target']}")
        from .probe import probe_target

        sock.send(msgpack.packb({"probe": req, **probe_target(probe["target"], probe.get("path"))}))
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


def serve(sock: socket.socket, parent_pid: int) -> None:
    """The zygote's loop: spawn on request, report exits."""
    import select

    # Warm the imports every domain needs, so a fork gets them for free.
    import redleaf.domains.host  # noqa: F401
    import numpy  # noqa: F401
    import zmq  # noqa: F401

    import redleaf.domains.device_host  # noqa: F401
    import redleaf.domains.group  # noqa: F401
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def reap():
        while True:
            try:  # look without reaping: the zombie leader keeps its group id reserved
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            try:
                os.killpg(info.si_pid, signal.SIGKILL)  # what the domain forked dies with it
            except (ProcessLookupError, PermissionError):
                pass
            pid, status = os.waitpid(info.si_pid, 0)
            group_gone(pid)
            sock.send(msgpack.packb({"exit": pid, "code": os.waitstatus_to_exitcode(status)}))

    groups: dict[str, _Group] = {}
    warmed: set[str] = set()

    def group_gone(pid: int) -> None:
        for name, g in list(groups.items()):
            if g.pid == pid:
                g.sock.close()
                del groups[name]

    def from_group(g: _Group) -> None:
        try:
            data = g.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            return  # it exited: reap() reports the pid
        try:
            msg = msgpack.unpackb(data, raw=False)
            did, code = msg["member_exit"], msg["code"]
        except Exception:  # noqa: BLE001 - an untrusted host's malformed report is ignored
            return
        if did in g.members and isinstance(code, int):
            g.members.discard(did)
            sock.send(msgpack.packb({"exit_member": did, "pid": g.pid, "code": code}))

    sock.send(msgpack.packb({"ready": os.getpid()}))
    while True:
        r, _, _ = select.select([sock, rfd] + [g.sock for g in groups.values()], [], [], 1.0)
        for g in list(groups.values()):
            if g.sock in r:
                from_group(g)
        if rfd in r:
            try:
                os.read(rfd, 4096)
            except BlockingIOError:
                pass
        reap()
        if os.getppid() != parent_pid:
            os._exit(0)
        if sock in r:
            try:
                data = sock.recv(1 << 20)
            except ConnectionError:
                os._exit(0)
            if not data:
                os._exit(0)
            req = msgpack.unpackb(data, raw=False)
            if "member" in req:
                _to_member(groups, req["member"])
                continue
            gname = req.get("spec", {}).get("group")
            if gname:
                g = groups.get(gname)
                if g is not None and _forward(g, {"add": req["spec"]}):
                    g.members.add(req["spec"]["domain_id"])
                    sock.send(msgpack.packb({"spawned": g.pid, "req": req["req"]}))
                    continue
                if g is not None:  # its host is going away: a new one serves the group
                    g.sock.close()
                    del groups[gname]
            me = os.getpid()
            gsock = gchild = None
            if gname:
                gsock, gchild = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
            if pid == 0:
                if "probe" in req:
                    _probe_child(sock, req["req"], req["probe"], me)
                if gsock is not None:
                    gsock.close()
                _child(sock, req["spec"], me, gchild, tuple(g.sock for g in groups.values()))
            if gname:
                gchild.close()
                groups[gname] = _Group(pid, gsock, {req["spec"]["domain_id"]})
            try:  # also here, so the group exists before anyone may signal it
                os.setpgid(pid, pid)
            except OSError:
                pass  # the child did it first, or is gone already
            sock.send(msgpack.packb({"spawned": pid, "req": req["req"]}))
            _warm(req.get("spec", {}).get("target"), warmed)


#: Whose modules the zygote imports itself once a domain of theirs was spawned, so the
#: next fork of the same target (a restart after a crash, the next Rv6 program) starts
#: with its code imported: the NVMe driver's modules take ~35 ms to import, the fs
#: domain's ~60 ms, a restart's whole budget. Only this project's own modules: they do
#: nothing at import but define, where a user's module might start a thread or open a
#: zmq context, neither of which survives a fork.
WARM_PREFIX = "redleaf."


def _warm(target, warmed: set) -> None:
    """Import the module of `target` ("package.module:Class") into this process, once,
    if it is one of ours. A module that fails to import is left alone: the child that
    runs it reports why."""
    if not isinstance(target, str):
        return
    mod = target.partition(":")[0]
    if mod in warmed or not mod.startswith(WARM_PREFIX):
        return
    warmed.add(mod)
    try:
        importlib.import_module(mod)
    except Exception:  # noqa: BLE001 - the domain's own start says what is wrong
        pass


class _Group:
    """A group host the zygote forked: its pid, its socket, the ids it was sent."""

    __slots__ = ("pid", "sock", "members")

    def __init__(self, pid: int, sock: socket.socket, members: set):
        self.pid, self.sock, self.members = pid, sock, members


def _forward(g: _Group, msg: dict) -> bool:
    try:
        g.sock.send(msgpack.packb(msg))
        return True
    except OSError:  # the host is dying; its exit is reported by reap()
        return False


def _to_member(groups: dict, m: dict) -> None:
    """A supervisor request for one member (stop, fault): to the host it was sent to."""
    did = m.get("domain_id")
    for g in groups.values():
        if did in g.members:
            _forward(g, {"member": m})
            return


def start_zygote(instance: str = "?", umask: int | None = None) -> tuple[int, socket.socket]:
    """Fork the zygote from the supervisor; returns (pid, socket).  `umask`: the one
    the zygote (and so every domain) runs with, when the supervisor's is stricter."""
    set_instance(instance)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sup = os.getpid()
    pid = os.fork()
    if pid == 0:
        parent.close()
        code = 0
        try:
            set_pdeathsig()
            if os.getppid() != sup:
                os._exit(0)
            os.setpgid(0, 0)
            if umask is not None:
                os.umask(umask)
            set_title("zygote")
            serve(child, sup)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    child.close()
    msg = msgpack.unpackb(parent.recv(1 << 16), raw=False)
    assert "ready" in msg, msg
    return pid, parent
