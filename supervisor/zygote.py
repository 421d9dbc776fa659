"""The fork server: a warm process that forks domains so a load costs a fork, not an
interpreter start and a round of imports.

The supervisor forks the zygote once at start-up, before it creates any zmq context
(zmq contexts do not survive fork).  The zygote imports the runtime, then serves
spawn requests on a SOCK_SEQPACKET socketpair.  It is the parent of every domain, so
it reaps them on SIGCHLD and reports each exit status to the supervisor at once:
that report is the supervisor's death notification.

Lifetime: the zygote dies with the supervisor (PR_SET_PDEATHSIG), and every domain
dies with the zygote, so no domain outlives a killed supervisor.
"""

from __future__ import annotations

import ctypes
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


def _child(sock: socket.socket, spec: dict, parent_pid: int) -> None:
    """In the forked child: become the domain."""
    code = 0
    try:
        set_pdeathsig()
        if os.getppid() != parent_pid:
            os._exit(1)
        sock.close()
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.setpgid(0, 0)
        log = spec["log"]
        rotate_log(log)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        if spec.get("kind") == "device":
            from redleaf.drivers.device_host import main as entry
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


def serve(sock: socket.socket, parent_pid: int) -> None:
    """The zygote's loop: spawn on request, report exits."""
    import select

    # Warm the imports every domain needs, so a fork gets them for free.
    import redleaf.domains.host  # noqa: F401
    import numpy  # noqa: F401
    import zmq  # noqa: F401

    try:
        import redleaf.drivers.device_host  # noqa: F401
    except ImportError:
        pass
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sock.send(msgpack.packb({"exit": pid, "code": os.waitstatus_to_exitcode(status)}))

    sock.send(msgpack.packb({"ready": os.getpid()}))
    while True:
        r, _, _ = select.select([sock, rfd], [], [], 1.0)
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
            me = os.getpid()
            pid = os.fork()
            if pid == 0:
                _child(sock, req["spec"], me)
            sock.send(msgpack.packb({"spawned": pid, "req": req["req"]}))


def start_zygote() -> tuple[int, socket.socket]:
    """Fork the zygote from the supervisor; returns (pid, socket)."""
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
