"""The control plane: msgpack messages over pyzmq, and the client side of it.

Every request is one msgpack map ``{"v": 1, "token" | "cred": bytes, "cmd": str, "rid":
int, ...}`` sent on a DEALER socket to the supervisor's ROUTER.

Two kinds of credential, two kinds of command (DESIGN §5a: a message speaks only for
its sender):

- the *instance token* (the file `token` in the 0700 runtime directory) is the user's:
  it alone may issue the operator commands (USER_COMMANDS: load, unload, kill, ...)
  and `attach`;
- a *domain credential* (32 random bytes the supervisor makes for each domain at
  spawn, handed over by the zygote, and for each client at attach) names exactly one
  domain: the DOMAIN_COMMANDS act for the domain the credential names, so none of
  them carries a domain id (a `domain_id` field, if a sender still adds one, must
  agree with the credential or the request is refused).  A domain process is never
  given the instance token.
- `ping` and `status` are read-only and accept either.
- `spawn_child` / `kill_child` are domain commands granted only by the sender's
  manifest entry (`may_spawn = true`, with the fixed `spawn_target` its children run):
  a child is a `temporary` domain whose only capability is its spawner, whose death
  is pushed to the spawner (`child_exit`), and which dies with its spawner.
  Every reply is a map with
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
    "hello": {"pid": int},
    "ready": {"exports": list},
    "init_failed": {"error": str},
    "attach_nonce": {"pid": int},
    "attach": {"pid": int, "nonce": str},
    "detach": {},
    "load": {"name": str, "target": str, "restart": str, "config": dict, "uses": list, "shadow": bool},
    "unload": {"name": str},
    "restart": {"name": str},
    "kill": {"name": str, "how": str},
    "inject": {"name": str, "method": str, "nth": int, "action": str, "stall_s": _num},
    "inject_ack": {"error": str},
    "lookup": {"name": str, "interface": str, "fingerprint": str},
    "close_channel": {"channel": int},
    "lease": {"kind": str, "count": int},
    "register_type": {"type_id": int, "type_name": str, "descr": str},
    "report_hang": {"callee": int},
    "bind_device": {"device": str},
    "heap": {"check": bool},
    "logs": {"name": str},
    "shutdown": {},
    "spawn_child": {"config": dict},
    "kill_child": {"child": int},
}
#: commands a domain sends for itself: they need its credential, and act for it alone
DOMAIN_COMMANDS = frozenset({"hello", "ready", "init_failed", "detach", "lookup", "close_channel", "lease",
                             "register_type", "report_hang", "bind_device",
                             "spawn_child", "kill_child", "inject_ack"})
#: read-only commands anyone with either credential may send
ANY_COMMANDS = frozenset({"ping", "status"})
#: the user's commands (and attach, which makes a new client): the instance token only
USER_COMMANDS = frozenset(COMMANDS) - DOMAIN_COMMANDS - ANY_COMMANDS
CRED_BYTES = 32


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
    # type() too: 1.0 and True compare equal to 1 but are not a version number
    if type(msg.get("v")) is not int or msg["v"] != PROTOCOL_VERSION:
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
                 timeout_s: float = 10.0, token: bytes | None = None, cred: bytes | None = None):
        self.paths = InstancePaths(instance)
        self.instance = instance
        #: the domain credential this client speaks for (a domain's, from its spawn
        #: spec; an attached client's, from the attach reply), or None
        self.cred = cred
        # a domain process gets its credential and no instance token: it has no use
        # for the user's commands, so it does not read the token either
        self.token = token if token is not None or cred is not None else self.paths.read_token()
        self.timeout_ms = int(timeout_s * 1000)
        self.ctx = zmq.Context.instance() if identity is None else zmq.Context()
        self._own_ctx = identity is not None
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.connect(self.paths.control)
        self._rids = itertools.count(1)
        #: submitted requests not yet collected, and replies that came for them while
        #: another request was being waited on
        self._outstanding: set[int] = set()
        self._early: dict[int, dict] = {}
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
        rid = self.submit(cmd, **fields)
        reply = self.collect([rid], timeout_s, cmd)[rid]
        if isinstance(reply, ControlError):
            raise reply
        return reply

    def submit(self, cmd: str, **fields) -> int:
        """Send a request without waiting; its answer comes from `collect`.  Several
        may be outstanding (the replies carry their rid): a crash campaign fires the
        faults of one wave this way, in the same instant."""
        rid = next(self._rids)
        gone = self.supervisor_gone()
        if gone:
            raise InstanceNotRunning(gone)
        msg = {"v": PROTOCOL_VERSION, "cmd": cmd, "rid": rid, **fields}
        if self.cred is not None and (cmd in DOMAIN_COMMANDS or self.token is None):
            msg["cred"] = self.cred
        else:
            msg["token"] = self.token
        self.sock.send(encode(msg))
        self._outstanding.add(rid)
        return rid

    def collect(self, rids: list[int], timeout_s: float | None = None, what: str = "") -> dict:
        """The replies to the submitted requests `rids`: rid -> reply, or the
        ControlError it was refused with.  InstanceNotRunning if the supervisor dies or
        does not answer them all in time."""
        timeout_ms = self.timeout_ms if timeout_s is None else int(timeout_s * 1000)
        deadline = time.monotonic() + timeout_ms / 1000
        want = set(rids)
        out: dict = {}
        for rid in list(want):
            if rid in self._early:
                out[rid] = self._reply(self._early.pop(rid))
                want.discard(rid)
                self._outstanding.discard(rid)
        while want:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.sock.poll(min(left_ms, _LIVENESS_SLICE_MS)):
                gone = self.supervisor_gone()
                if gone:
                    raise InstanceNotRunning(gone)
                if left_ms > 0:
                    continue
                self._outstanding -= want  # their replies, if they ever come, are dropped
                raise InstanceNotRunning(
                    f"the supervisor of {self.instance!r} did not answer {what or 'a request'!r} "
                    f"within {timeout_ms / 1000:.1f}s"
                )
            reply = msgpack.unpackb(self.sock.recv(), raw=False)
            if "push" in reply:
                self.pushes.append(reply)
                continue
            rid = reply.get("rid")
            if rid is None and len(want) == 1:
                rid = next(iter(want))  # a refusal of a request it could not parse carries no rid
            if rid not in want:
                if rid in self._outstanding:
                    self._early[rid] = reply  # another submitted request's: kept for its collect
                continue  # else a late reply to an earlier, timed-out request
            want.discard(rid)
            self._outstanding.discard(rid)
            out[rid] = self._reply(reply)
        return out

    @staticmethod
    def _reply(reply: dict):
        return reply if reply.get("ok") else ControlError(reply.get("kind", "Error"), reply.get("error", "request failed"))

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

