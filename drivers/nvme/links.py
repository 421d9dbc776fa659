"""Proxies to a driver that may be killed at any instruction: `checked_lookup`.

It works around races in the runtime's `Link` (domains/runtime.py) that a shadow,
calling its driver thousands of times a second while it is being killed, runs
into.  Reported to the runtime's owner; drop this module once 1 and 3 are fixed
there (2 and 5 were fixed in commit 6591b6b; the overrides below are then
harmless).

1. Lost crash notice.  `Link.invoke` checks the channel state, then posts the
   request, then waits only for the response sequence number.  The supervisor's
   `channel.fail_inflight` reads the sequence numbers, then marks the channel dead,
   and posts a CRASHED response only if a request was pending when it looked.  A
   request posted in between is never answered: the caller sleeps until the call
   deadline (30 s for BDev), then raises RpcTimeout.  Here the wait also ends
   when the channel is no longer OPEN: the callee is dead either way.
2. Half-failed reconnect.  `Link.connect` dropped its channel before the lookup; if
   the lookup raised DomainUnavailable the link kept `ch = None` with `broken =
   False`, and the next call died with AttributeError.  Here a failed connect
   leaves the link broken, so the next call looks up again.
3. Stale doorbell after domain-id reuse.  `Runtime.waker_for` caches one
   PeerWaker per domain id, holding an fd of that domain's doorbell FIFO.  When the
   domain dies the supervisor unlinks the FIFO, and once ids wrap around (about 250
   restarts) a new incarnation gets the same id and a new FIFO at the same path:
   rings through the cached fd reach nobody, and every call waits for the callee's
   100 ms idle poll.  Here a reconnect checks the cached fd against the path and,
   if it is stale, points that fd (dup2) at the current FIFO, so every holder of
   the PeerWaker rings the live doorbell.
4. The same staleness in the device host (drivers/device_host.py caches the waker
   for the bound driver's id): after id reuse the device's "interrupts" are lost.
   The driver copes by never sleeping longer than a few milliseconds while it
   waits for the device (domain.WAIT_SLICE_S, POLL_WAIT_S).
5. Death during connect.  If the callee died between the lookup and `waker_for`
   opening its doorbell FIFO, `connect` raised FileNotFoundError, an undeclared
   exception.  Here it becomes DomainUnavailable.
"""

from __future__ import annotations

import os

from domains import channel as chan
from domains.errors import DomainCrashed, DomainUnavailable, RpcTimeout
from domains.proxy import make_proxy
from domains.runtime import Link


def refresh_waker(waker) -> None:
    """Point a PeerWaker's doorbell fd at the FIFO now at its path (see 3. above)."""
    bell = waker.bell
    try:
        st = os.stat(bell.path)
    except FileNotFoundError:
        return  # the peer is gone; the next connect finds the new one
    if bell.fd >= 0 and os.fstat(bell.fd).st_ino == st.st_ino:
        return
    fd = os.open(bell.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    if bell.fd >= 0:
        os.dup2(fd, bell.fd, inheritable=False)
        os.close(fd)
    else:
        bell.fd = fd


#: how long a caller spins for the answer before it sleeps on its doorbell (as the
#: runtime's own calls do; spinning longer measured slower on a 2-core machine)
SPIN_NS = 60_000


class CheckedLink(Link):
    """A Link without the races above.  Unlike `Runtime.wait_response` it does not
    serve inbound calls while it waits: the drivers it is used for never call back."""

    def connect(self) -> None:
        self.broken = True
        try:
            super().connect()
            self.broken = True
            refresh_waker(self.waker)
        except FileNotFoundError as e:  # 5. above
            raise DomainUnavailable(f"{self.name} died while connecting ({e.filename} is gone)") from None
        self.broken = False

    def peer_for_call(self) -> int:
        if self.broken or self.ch is None or self.ch.state != chan.OPEN:
            self.connect()
        return self.peer

    def invoke(self, payload: bytes, timeout: float, ctx) -> tuple[int, memoryview]:
        with self.lock:
            if self.broken or self.ch is None or self.ch.state != chan.OPEN:
                if ctx is not None:
                    raise DomainCrashed(f"{self.name} died before the call was sent")
                self.connect()
            ch = self.ch
            seq = ch.post_request(payload)
            self.waker.wake()
            rt = self.rt
            rt.calls_made += 1
            if not ch.response_ready(seq):
                rt.wait_until(lambda: ch.response_ready(seq) or ch.state != chan.OPEN, timeout, spin_ns=SPIN_NS)
            if not ch.response_ready(seq):
                self.broken = True
                if ch.state != chan.OPEN:
                    return chan.CRASHED, memoryview(b"")
                rt.report_hang(self.peer)
                raise RpcTimeout(f"{self.name} did not answer within {timeout:.3g}s; "
                                 "it is treated as hung and killed")
            kind, resp = ch.read_response()
            if kind == chan.CRASHED:
                self.broken = True
            return kind, resp


def checked_lookup(rt, name: str, iface: type):
    """Like `Runtime.lookup`, through a CheckedLink (shared per (name, interface))."""
    key = (name, iface)
    link = rt.links.get(key)
    if not isinstance(link, CheckedLink):
        link = CheckedLink(rt, name, iface)
        link.connect()
        rt.links[key] = link
    return make_proxy(iface, link)
