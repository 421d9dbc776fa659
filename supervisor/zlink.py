"""The supervisor's end of the zygote socket: requests out, reports in, as events.

Owns: the socketpair to the zygote, the request-id counter and the table of
requests the zygote has not answered yet (each with a deadline).  Calls only the
callbacks it was built with.  Nothing here waits: `spawn` and `probe` send and
return a request id; the answer arrives later through `drain`, which the event loop
calls when the socket is readable:

  on_spawned(req, pid)       the zygote forked the child of request `req`
  on_exit(pid, code)         a child of the zygote exited (reaped, its group killed)
  on_probe(req, result)      a probe child's answer ({"shadow": ...} or {"error": ...})
  on_member_exit(id, pid, code)  a member of the group host `pid` ended alone (a panic,
                             a clean stop); the zygote checked the id is that host's
  on_timeout(req)            request `req` got no "spawned" within its deadline
  on_lost()                  the zygote itself is gone
"""

from __future__ import annotations

import itertools
import socket
import time

import msgpack

#: a fork that the zygote has not reported within this long is a failed start
SPAWN_REPLY_S = 10.0
RECV_MAX = 1 << 16


class ZygoteLink:
    def __init__(self, sock: socket.socket, *, on_spawned, on_exit, on_probe, on_timeout, on_lost,
                 on_member_exit=None):
        self.sock = sock
        self._reqs = itertools.count(1)
        self.pending: dict[int, float] = {}  # req -> deadline
        self.on_spawned, self.on_exit, self.on_probe = on_spawned, on_exit, on_probe
        self.on_timeout, self.on_lost = on_timeout, on_lost
        self.on_member_exit = on_member_exit

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, msg: dict) -> int:
        req = next(self._reqs)
        self.sock.send(msgpack.packb(dict(msg, req=req)))
        self.pending[req] = time.monotonic() + SPAWN_REPLY_S
        return req

    def spawn(self, spec: dict) -> int:
        return self._send({"spec": spec})

    def probe(self, target: str, path: str | None, log: str) -> int:
        return self._send({"probe": {"target": target, "path": path, "log": log}})

    def member(self, domain_id: int, op: str, how: str = "") -> None:
        """Ask the host of group member `domain_id` to stop it or inject a fault into
        it.  No answer: the member's end comes back as an on_member_exit report (or
        as its host's exit)."""
        self.sock.send(msgpack.packb({"req": 0, "member": {"domain_id": domain_id, "op": op, "how": how}}))

    def recv_nowait(self) -> dict | None:
        """One report, or None if none is waiting.  Raises EOFError if the zygote is gone."""
        try:
            data = self.sock.recv(RECV_MAX, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as e:
            raise EOFError(f"zygote socket failed: {e}") from None
        if not data:
            raise EOFError("the zygote closed its socket")
        return msgpack.unpackb(data, raw=False)

    def drain(self) -> None:
        while True:
            try:
                msg = self.recv_nowait()
            except EOFError:
                self.on_lost()
                return
            if msg is None:
                return
            self.dispatch(msg)

    def dispatch(self, msg: dict) -> None:
        if "spawned" in msg:
            req = msg["req"]
            self.pending.pop(req, None)
            self.on_spawned(req, msg["spawned"])
        elif "exit" in msg:
            self.on_exit(msg["exit"], msg["code"])
        elif "exit_member" in msg:
            if self.on_member_exit is not None:
                self.on_member_exit(msg["exit_member"], msg["pid"], msg["code"])
        elif "probe" in msg:
            self.on_probe(msg["probe"], msg)

    def check_deadlines(self) -> None:
        now = time.monotonic()
        for req, deadline in list(self.pending.items()):
            if now > deadline:
                del self.pending[req]
                self.on_timeout(req)
