"""The supervisor's two zmq endpoints: the control ROUTER and the event PUB socket.

Owns: the zmq context and both sockets.  Calls only pyzmq and the control codec.
Sending never blocks: a peer that is gone or slow loses the message, and the
supervisor goes on (a reply nobody waits for is not an error).
"""

from __future__ import annotations

import time

import zmq

from redleaf.domains.control import MAX_FRAME, encode

#: requests handled per readiness event, so a flood cannot starve the other events
DRAIN_BATCH = 256


class Endpoints:
    def __init__(self, control_addr: str, events_addr: str):
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.router.bind(control_addr)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(events_addr)

    def requests(self):
        """Yield (ident, envelope, frame) for the requests waiting now, without blocking."""
        for _ in range(DRAIN_BATCH):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            yield frames[0], frames[1:-1], frames[-1]

    def send(self, ident: bytes, msg: dict, envelope=()) -> None:
        try:
            self.router.send_multipart([ident, *envelope, encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the peer is gone; nothing to tell

    def answer(self, waiters: list, reply: dict) -> None:
        """Send `reply` to every (ident, rid) in `waiters`."""
        for ident, rid in waiters:
            self.send(ident, dict(reply, rid=rid))

    def publish(self, event: str, e, **extra) -> None:
        msg = {"event": event, "name": e.name, "id": e.id, "state": e.state, "reason": e.reason,
               "ts": time.time(), **extra}
        try:
            self.pub.send_multipart([event.encode(), encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        try:
            self.router.close(0)
            self.pub.close(0)
            self.ctx.term()
        except zmq.ZMQError:
            pass
