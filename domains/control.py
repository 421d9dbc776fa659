"""The control plane: msgpack messages over pyzmq, and the client side of it.

Every request is one msgpack map ``{"v": 1, "token": bytes, "cmd": str, "rid": int, ...}``
sent on a DEALER socket to the supervisor's ROUTER.  Every reply is a map with
``"ok": True`` and fields, or ``"ok": False, "kind": <error type>, "error": <message>``.
The supervisor may also push unsolicited messages (``"push": <kind>``) to a domain,
e.g. "a channel was opened to you"; the client keeps them in a queue for the host
loop.  Nothing here is on the call fast path.
"""

from __future__ import annotations

import collections
import itertools
import time
from typing import Any

import msgpack
import psutil
import zmq

from .errors import ControlError, InstanceNotRunning
from .paths import InstancePaths

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20  # the supervisor drops peers that send bigger frames
_LIVENESS_SLICE_MS = 200  # how often a waiting request checks that the supervisor lives

# Field schemas the supervisor enforces.  A value is a type or a tuple of types.
_num = (int, float)
_opt_str = (str, type(None))
COMMANDS: dict[str, dict[str, Any]] = {
    "ping": {},
    "status": {},
    "hello": {"domain_id": int, "pid": int},
    "ready": {"domain_id": int, "exports": list},
    "init_failed": {"domain_id": int, "error": str},
    "attach": {"pid": int},
    "detach": {"domain_id": int},
    "load": {"name": str, "target": str, "restart": str, "config": dict, "uses": list, "shadow": bool},
    "unload": {"name": str},
    "restart": {"name": str},
    "kill": {"name": str, "how": str},
    "lookup": {"domain_id": int, "name": str, "interface": str, "fingerprint": str},
    "close_channel": {"domain_id": int, "channel": int},
    "lease": {"domain_id": int, "kind": str, "count": int},
    "register_type": {"domain_id": int, "type_id": int, "type_name": str, "descr": str},
    "report_hang": {"domain_id": int, "callee": int},
    "bind_device": {"domain_id": int, "device": str},
    "heap": {"check": bool},
    "logs": {"name": str},
    "shutdown": {},
}


class ProtocolError(ValueError):
    """A control frame that is not a well-formed request."""


def encode(msg: dict) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def decode_request(frame: bytes) -> dict:
    """Parse and validate one request frame; raise ProtocolError saying what is wrong."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"not a msgpack message ({type(e).__name__})") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"a request must be a msgpack map, got {type(msg).__name__}")
    if msg.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {msg.get('v')!r} (expected {PROTOCOL_VERSION})")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {cmd!r}; known: {', '.join(sorted(COMMANDS))}")
    for field, typ in COMMANDS[cmd].items():
        if field not in msg:
            raise ProtocolError(f"command {cmd!r} needs field {field!r}")
        val = msg[field]
        if isinstance(val, bool) and typ is int:
            raise ProtocolError(f"field {field!r} of {cmd!r} must be int, got bool")
        if not isinstance(val, typ):
            want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise ProtocolError(f"field {field!r} of {cmd!r} must be {want}, got {type(val).__name__}")
    return msg


class ControlClient:
    """A synchronous request/reply client for the supervisor's control endpoint.

    Not thread-safe: one per thread (the domain host and attach() each own one).
    """

    def __init__(self, instance: str = "default", *, identity: bytes | None = None,
                 timeout_s: float = 10.0, token: bytes | None = None):
        self.paths = InstancePaths(instance)
        self.instance = instance
        self.token = token if token is not None else self.paths.read_token()
        self.timeout_ms = int(timeout_s * 1000)
        self.ctx = zmq.Context.instance() if identity is None else zmq.Context()
        self._own_ctx = identity is not None
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.connect(self.paths.control)
        self._rids = itertools.count(1)
        self.pushes: collections.deque[dict] = collections.deque()
        self._sup = self._supervisor_record()

    def _supervisor_record(self) -> tuple[int, float] | None:
        try:
            pid, ctime = self.paths.supervisor_pid.read_text().split()
            return int(pid), float(ctime)
        except (OSError, ValueError):
            return None

    def supervisor_gone(self) -> str | None:
        """Why the supervisor cannot answer (its pid died, or its record is gone), or None
        while it lives. Cheap enough to ask between slices of every wait, so a dead
        supervisor is known within a fraction of a second, not at a 30 s timeout."""
        rec = self._sup or self._supervisor_record()
        if rec is None:
            return (f"instance {self.instance!r} is not running (no supervisor record); "
                    f"start it with `redleaf up --name {self.instance}`")
        pid, ctime = rec
        try:
            alive = abs(psutil.Process(pid).create_time() - ctime) < 0.01 and \
                psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if alive:
            return None
        return (f"the supervisor of {self.instance!r} is not running (pid {pid} died); "
                f"`redleaf up --name {self.instance}` cleans up and starts again")

    def request(self, cmd: str, timeout_s: float | None = None, **fields) -> dict:
        rid = next(self._rids)
        gone = self.supervisor_gone()
        if gone:
            raise InstanceNotRunning(gone)
        msg = {"v": PROTOCOL_VERSION, "token": self.token, "cmd": cmd, "rid": rid, **fields}
        self.sock.send(encode(msg))
        timeout_ms = self.timeout_ms if timeout_s is None else int(timeout_s * 1000)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.sock.poll(min(left_ms, _LIVENESS_SLICE_MS)):
                gone = self.supervisor_gone()
                if gone:
                    raise InstanceNotRunning(gone)
                if left_ms > 0:
                    continue
                raise InstanceNotRunning(
                    f"the supervisor of {self.instance!r} did not answer {cmd!r} within {timeout_ms / 1000:.1f}s"
                )
            reply = msgpack.unpackb(self.sock.recv(), raw=False)
            if "push" in reply:
                self.pushes.append(reply)
                continue
            if reply.get("rid") not in (rid, None):
                continue  # a late reply to an earlier, timed-out request
            if not reply.get("ok"):
                raise ControlError(reply.get("kind", "Error"), reply.get("error", "request failed"))
            return reply

    def poll_pushes(self) -> None:
        """Move any pushed messages waiting on the socket into `pushes` (non-blocking)."""
        while self.sock.poll(0):
            reply = msgpack.unpackb(self.sock.recv(), raw=False)
            if "push" in reply:
                self.pushes.append(reply)

    def close(self) -> None:
        self.sock.close(0)
        if self._own_ctx:
            self.ctx.term()


def connect(instance: str = "default", timeout_s: float = 10.0) -> ControlClient:
    """A control client for an instance, as the CLI uses it."""
    client = ControlClient(instance, timeout_s=timeout_s)
    return client

