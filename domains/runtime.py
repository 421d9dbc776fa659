"""The per-process runtime: one per domain host or attached client.

It owns the process's control connection, its view of the exchange heap, its
doorbell, the channels it serves (inbound) and the links it calls through
(outbound).  Waiting for a reply is a loop that spins on the response word, serves
inbound calls meanwhile (so A->B->A re-entrancy cannot deadlock), and after a short
spin budget goes to sleep on the doorbell.  The same loop is the idle loop of a
domain host.

In a group host (domains/group.py, DESIGN §7a) several runtimes, one per domain,
share the process and its one thread: `group` is set, and serving, sleeping,
heartbeats and control notices then cover every member (a wait inside one domain
serves the others' inbound calls, sleeps on all their doorbells and announces all
of them asleep), and a lookup of a name exported in the group gets a LocalLink
(domains/local_link.py): the same proxy, called on this thread.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import struct
import threading
import time

import zmq

from . import channel as chan
from .control import ControlClient
from .doorbell import RA_BUSY, RA_CALLS_MADE, RA_CALLS_SERVED, RA_HEARTBEAT, RA_SLEEPING, Bell, PeerWaker, fence
from .errors import ControlError, DomainCrashed, DomainUnavailable, InstanceGone, RpcTimeout
from .interface import spec_of
from .marshal import packb
from .paths import InstancePaths
from .proxy import Dispatcher, FaultArm, make_proxy, panic

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
#: spin this long before sleeping on the doorbell.  Spinning loops yield the CPU
#: (sched_yield) every few rounds: with more busy processes than cores (a client, a
#: driver and a device on two), a spinner that does not yield holds the very CPU
#: its peer needs to produce what it waits for, and a sleeper pays a wake-up per
#: hop.  Yielding spinners hand the CPU over without either cost; with a free core
#: the yield returns at once.
SPIN_NS = 1_000_000
#: how often a busy loop reads its control pushes (a fault to arm, a notice)
PUSH_CHECK_NS = 5_000_000
IDLE_POLL_MS = 100  # a sleeping host still wakes this often (heartbeat, control)
IDLE_SLEEP_MS = 1000  # a domain with nothing to do: its doorbell or a signal wakes it sooner
SUPERVISOR_CHECK_NS = 200_000_000  # a call waiting this long checks that the supervisor lives


#: the answer to a call its callee dropped with the channel before taking it
_CLOSED_UNSERVED = packb(("CallRejected", "the channel was closed before its callee took the call"))


class Link:
    """The caller's end of a connection to one exported name.

    After the callee dies, the next call looks the name up again and so reaches the
    restarted incarnation (or raises DomainUnavailable if there is none)."""

    __slots__ = ("rt", "name", "iface", "ch", "waker", "peer", "lock", "broken", "reentrant", "deadline")
    local = False  # proxies hand this link msgpack bytes (invoke); see LocalLink

    def __init__(self, rt: "Runtime", name: str, iface: type, reentrant: bool = True,
                 deadline: float | None = None):
        self.rt = rt
        self.name = name
        self.iface = iface
        self.ch = None
        self.waker = None
        self.peer = 0
        self.lock = threading.Lock()
        self.broken = True
        self.reentrant = reentrant  # serve inbound calls while waiting on this link
        self.deadline = deadline  # the caller's own, shorter call deadline (see Runtime.lookup)

    def connect(self) -> None:
        if self.ch is not None:
            self.rt.close_channel(self.ch)
            self.ch = None
        spec = spec_of(self.iface)
        try:
            r = self.rt.ctl.request("lookup", name=self.name,
                                    interface=spec.name, fingerprint=spec.fingerprint)
        except ControlError as e:
            if e.kind in ("DomainUnavailable", "DomainCrashed"):
                raise DomainUnavailable(str(e)) from None
            raise
        try:
            self.ch = self.rt.open_channel(r["channel"], r["segment"], r["size"],
                                           caller=self.rt.domain_id, callee=r["callee"])
        except (OSError, ValueError) as e:
            raise DomainUnavailable(f"cannot map the channel to {self.name}: {e}") from None
        self.peer = r["callee"]
        try:
            self.waker = self.rt.waker_for(self.peer)
            self.waker.refresh()  # the id may belong to a new incarnation
        except OSError:  # it died between the lookup and now: its doorbell is gone
            raise DomainUnavailable(f"{self.name} died while connecting; try again") from None
        self.broken = False

    def peer_for_call(self) -> int:
        if self.broken or self.ch is None or self.ch.state != chan.OPEN:
            self.connect()
        return self.peer

    def invoke(self, payload: bytes, timeout: float, ctx) -> tuple[int, memoryview]:
        with self.lock:
            if self.broken or self.ch is None or self.ch.state != chan.OPEN:
                if ctx is not None:
                    # arguments were encoded for a peer that is gone
                    raise DomainCrashed(f"{self.name} died before the call was sent")
                self.connect()
            ch = self.ch
            seq = ch.post_request(payload)
            rt = self.rt
            rt.calls_made += 1
            waker = self.waker
            if waker.asleep():
                got = rt.wait_cold(ch, seq, timeout, waker, self.reentrant)
            elif _U64.unpack_from(ch.buf, chan.RESP_SEQ)[0] == seq:
                got = True  # answered already (a hot callee)
            else:
                got = rt.wait_response(ch, seq, timeout, serve=self.reentrant)
            if got is None:  # the channel died under us and no answer was posted
                self.broken = True
                return chan.CRASHED, memoryview(b"")
            if not got:
                self.broken = True
                rt.report_hang(self.peer)
                raise RpcTimeout(f"{self.name} did not answer within {timeout:.3g}s; it is treated as hung and killed")
            kind, resp = ch.read_response()
            if kind == chan.CRASHED:
                self.broken = True
            return kind, resp


class Export:
    __slots__ = ("name", "spec", "obj", "dispatcher")

    def __init__(self, name, spec, obj):
        self.name = name
        self.spec = spec
        self.obj = obj
        self.dispatcher = Dispatcher(name, spec, obj)


class Runtime:
    def __init__(self, instance: str, domain_id: int, ctl: ControlClient, heap):
        self.instance = instance
        self.paths = InstancePaths(instance)
        self.domain_id = domain_id
        self.ctl = ctl
        self.heap = heap
        self.mem = heap.mem  # memoryview of the whole heap mapping (DMA addresses are offsets in it)
        self.area = heap.runtime_area(domain_id)
        self.bell = Bell(self.paths.bell(domain_id))
        self.exports: dict[str, Export] = {}
        self.inbound: list[tuple[chan.Channel, Dispatcher]] = []
        self.deferred: list = []  # see defer()
        #: `child_exit` notices of this domain's spawned children, oldest first, until
        #: the domain takes them (DomainContext.child_exits)
        self.child_exits: list[dict] = []
        self.inbound_by_id: dict[int, tuple[chan.Channel, Dispatcher]] = {}
        #: the inbound channel whose call is being served (or was last): a server that
        #: keeps per-client state tells its clients apart by it (see client_alive)
        self.serving: chan.Channel | None = None
        self.channels: dict[int, chan.Channel] = {}
        self.wakers: dict[int, PeerWaker] = {}
        self.links: dict[tuple[str, type], Link] = {}
        self.calls_served = 0
        self.calls_made = 0
        self.fault_arm: FaultArm | None = None  # an in-call fault waiting (see _arm_fault)
        self.heartbeat = 0
        self.stop = False
        #: the group host this runtime shares a process with (None: a process of its own)
        self.group = None
        # what a sleep announces and drains: this domain's, or (a group) every member's
        self.sleep_areas = [self.area]
        self.bells = [self.bell]
        self._auto_names = itertools.count(1)
        # Sleep in a plain poll() on the doorbell and the control socket's notification
        # fd (edge-triggered: _sleep drains the socket's events before blocking).
        self.poller = select.poll()
        self.poller.register(self.bell.fd, select.POLLIN)
        self._ctl_fd = ctl.sock.getsockopt(zmq.FD)
        self.poller.register(self._ctl_fd, select.POLLIN)
        self._sig_fd = -1
        self.idle_sleep_ms = IDLE_SLEEP_MS

    # -- naming ----------------------------------------------------------------
    def lookup(self, name: str, iface: type, reentrant: bool = True, deadline_s: float | None = None):
        """A proxy for `name`'s `iface`.  `reentrant=False`: while a call through it
        waits, this process does not serve its own inbound calls (for a domain, such
        as a shadow, whose state must not be re-entered mid-call and whose callee
        never calls back).  `deadline_s`: this caller's deadline for every call
        through the proxy, when shorter than the interface's (a shadow must give up
        on a hung driver before its own clients give up on it)."""
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}")
        # (a proxy with its own deadline is another link: the same name may be
        # called both ways; without one the key keeps its (name, iface, reentrant) shape)
        key = (name, iface, reentrant) if deadline_s is None else (name, iface, reentrant, deadline_s)
        link = self.links.get(key)
        if link is None:
            if self.group is not None and self.group.is_local(name):
                from .local_link import LocalLink

                link = LocalLink(self, name, iface)
            else:
                link = Link(self, name, iface, reentrant, deadline_s)
            link.connect()
            self.links[key] = link
        return make_proxy(iface, link)

    def export(self, name: str, obj, iface: type | None = None) -> None:
        spec = spec_of(iface or obj)
        if not isinstance(obj, spec.cls):
            raise TypeError(f"{type(obj).__qualname__} does not implement {spec.name}")
        self.exports[(name, spec.name)] = Export(name, spec, obj)

    def export_object(self, obj) -> str:
        for e in self.exports.values():
            if e.obj is obj:
                return e.name
        name = f"{self.domain_id}.cap{next(self._auto_names)}"
        self.export(name, obj)
        self.ctl.request("ready", exports=self.export_list())
        return name

    def export_list(self) -> list:
        return [{"name": e.name, "interface": e.spec.name, "fingerprint": e.spec.fingerprint}
                for e in self.exports.values()]

    # -- channels --------------------------------------------------------------
    def open_channel(self, chan_id: int, segment: str, size: int, *, caller: int, callee: int) -> chan.Channel:
        """Map a channel's own segment (domains/channel.py: only its two parties ever
        learn its name) and say so in it, so the supervisor can unlink the file.
        `caller` and `callee` come from the supervisor's message, never from the header."""
        ch = chan.Channel(chan.map_segment(segment, size), chan_id, caller, callee)
        if ch.caller == self.domain_id:
            chan.mark_mapped(ch.buf, chan.CALLER_MAPPED)
        if ch.callee == self.domain_id:
            chan.mark_mapped(ch.buf, chan.CALLEE_MAPPED)
        self.channels[chan_id] = ch
        return ch

    def close_channel(self, ch: chan.Channel, release: bool = True) -> None:
        """Forget a channel, tell the supervisor, and (`release`) unmap its memory now
        rather than when its last view is collected (chan.release_segment).  A caller
        still waiting on it passes release=False: an answer posted before the callee
        died must still be read; its Link releases it when it reconnects."""
        self.channels.pop(ch.chan_id, None)
        entry = self.inbound_by_id.pop(ch.chan_id, None)
        if entry is not None:
            self.inbound = [e for e in self.inbound if e[0].chan_id != ch.chan_id]
            posted = _U64.unpack_from(ch.buf, chan.REQ_SEQ)[0]
            if posted > ch.seq:
                # a call posted and never taken (its caller died waiting): answer it
                # unserved, so the supervisor sees it ended and releases what it lent
                ch.seq = posted
                ch.post_response(chan.REJECTED, _CLOSED_UNSERVED)
            elif _U64.unpack_from(ch.buf, chan.RESP_SEQ)[0] < posted:
                release = False  # served further up this stack: its answer must reach the segment
        try:
            self.ctl.request("close_channel", channel=ch.chan_id)
        except ControlError:
            pass
        if release:
            chan.release_segment(ch.buf)

    def waker_for(self, peer: int) -> PeerWaker:
        w = self.wakers.get(peer)
        if w is None or w.bell.fd < 0:
            w = PeerWaker(Bell(self.paths.bell(peer)), self.heap.runtime_area(peer))
            self.wakers[peer] = w
        return w

    def handle_pushes(self) -> None:
        self.ctl.poll_pushes()
        while self.ctl.pushes:
            msg = self.ctl.pushes.popleft()
            kind = msg.get("push")
            if kind == "channel_open":
                exp = self.exports.get((msg["export"], msg.get("interface")))
                if exp is None:
                    continue
                try:
                    ch = self.open_channel(msg["channel"], msg["segment"], msg["size"],
                                           caller=msg["caller"], callee=self.domain_id)
                except (OSError, ValueError):
                    continue  # gone already (freed, or past its deadline): its caller's call fails
                try:
                    waker = self.waker_for(ch.caller)
                    waker.refresh()  # a reused id: a new caller
                except OSError:
                    waker = None  # gone already; serve_pending looks again
                entry = (ch, exp.dispatcher, waker)
                self.inbound.append(entry)
                self.inbound_by_id[ch.chan_id] = entry
            elif kind == "channel_closed":
                ch = self.channels.get(msg["channel"])
                if ch is not None:
                    self.wakers.pop(msg.get("peer", -1), None)
                    waited = any(getattr(ln, "ch", None) is ch and ln.lock.locked() for ln in self.links.values())
                    self.close_channel(ch, release=not waited)
            elif kind == "stop":
                self.stop = True
            elif kind == "child_exit":
                self.child_exits.append(msg)
            elif kind == "inject":
                self._arm_fault(msg)

    def _arm_fault(self, msg: dict) -> None:
        """The user's `inject` (supervisor/control.py cmd_inject): arm this domain's
        dispatchers so that a later call of the method faults inside the call, and
        tell the supervisor, which answers the user only then, so the fault is armed
        before the user's next call is sent."""
        if self.fault_arm is not None:
            self.fault_arm.disarm()  # the newest arm replaces an older one not yet fired
            self.fault_arm = None
        error = ""
        try:
            arm = FaultArm(msg.get("method", ""), msg.get("nth", 1), msg.get("action", ""), msg.get("stall_s", 0.0))
            if arm.arm([e.dispatcher for e in self.exports.values()]):
                self.fault_arm = arm
            else:
                methods = sorted({m.name for e in self.exports.values() for m in e.spec.by_index})
                error = (f"no export of this domain has a method {arm.method!r}; "
                         f"its methods: {', '.join(methods) or 'none'}")
        except (ValueError, TypeError) as e:
            error = str(e)
        try:
            self.ctl.request("inject_ack", error=error, timeout_s=5.0)
        except ControlError:
            pass

    # -- serving -----------------------------------------------------------------
    def serve_pending(self) -> int:
        """Serve the calls waiting on inbound channels (in a group: every member's)."""
        if self.group is not None:
            return self.group.serve_all()
        return self.serve_own()

    def serve_own(self) -> int:
        n = 0
        inbound = self.inbound
        for ch, disp, waker in inbound:
            req = ch.pending_request()
            if req is None:
                continue
            area = self.area
            # a wait inside a call may serve another one (re-entry): the outer call's
            # caller and busy flag come back when the inner one is answered, and at the
            # top nothing is left naming a channel that may be freed
            busy, outer = area[RA_BUSY], self.serving
            area[RA_BUSY] = 1
            self.serving = ch
            kind, payload = disp.serve(self, ch, req)
            area[RA_BUSY] = busy
            self.serving = outer
            ch.post_response(kind, payload)
            if self.inbound is not inbound and ch.chan_id not in self.inbound_by_id:
                chan.release_segment(ch.buf)  # closed while this call was served (close_channel)
            (waker or self.waker_for(ch.caller)).wake()
            n += 1
            if self.deferred:
                self._run_deferred()
        if n:
            self.calls_served += n
        return n

    def client_alive(self, chan_id: int) -> bool:
        """Is the caller at the far end of inbound channel `chan_id` still there?  The
        supervisor marks a channel's caller gone in the channel itself (exit, crash,
        detach, or the caller closing it) before it tells anyone, so the answer is as
        current as what the caller's peers already know; notices are read too."""
        if chan_id < 0:  # a co-located caller (LocalEnd): alive while it is a member
            return self.group is not None and self.group.member_alive(-chan_id)
        entry = self.inbound_by_id.get(chan_id)
        if entry is None:
            return False
        if entry[0].state != chan.OPEN:
            return False
        self.handle_pushes()
        return chan_id in self.inbound_by_id

    def defer(self, fn) -> None:
        """Run `fn()` once the call being served has been answered (a driver's
        bottom half: its caller goes on while the driver finishes the work, e.g.
        handing a batch it accepted to the device).  An exception from `fn` is a
        fault of this domain, as if it escaped a method."""
        self.deferred.append(fn)

    def _run_deferred(self) -> None:
        work, self.deferred = self.deferred, []
        self.area[RA_BUSY] = 1
        try:
            for fn in work:
                fn()
        except BaseException:
            panic("a deferred task failed")
        finally:
            self.area[RA_BUSY] = 0

    def beat(self) -> None:
        """Tell the supervisor's watchdog this domain is alive (and publish its call
        counters for `redleaf status`).

        The runtime beats by itself whenever it waits: in the serve loop, while waiting
        for a reply, in `wait_until`.  A domain that runs a long loop of its own,
        outside those (a packet-forwarding loop, a shadow polling for its restarted
        driver, a method that works for seconds), must call this every so often (say
        every millisecond or every few hundred iterations), or the watchdog takes the
        busy domain for hung and kills it.  It is two or three stores into shared
        memory: cheap enough to call from a hot loop.  In a group, every member beats:
        they share the thread, so one alive is all alive."""
        if self.group is not None:
            self.group.beat_all()
        else:
            self.beat_own()

    def beat_own(self) -> None:
        self.heartbeat += 1
        a = self.area
        _U64.pack_into(a, RA_HEARTBEAT, self.heartbeat)
        _U64.pack_into(a, RA_CALLS_SERVED, self.calls_served)
        _U64.pack_into(a, RA_CALLS_MADE, self.calls_made)

    _flush_counters = beat  # the old private name (drivers/device_host.py still uses it)

    def wake_on_signals(self) -> None:
        """Let a signal end the doorbell sleep at once (a domain's SIGTERM handler only
        sets `stop`, and PEP 475 would resume an interrupted poll until its timeout).
        For domain processes only: it takes the process's one wakeup fd."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._sig_fd = r
        self.poller.register(r, select.POLLIN)

    def _sleep(self, timeout_ms: int, ready) -> bool:
        """Block on the doorbell unless `ready()` turns true after announcing sleep."""
        if self.group is not None:
            self.group.sleep(timeout_ms, ready)
            return
        a = self.area
        a[RA_SLEEPING] = 1
        fence()
        events = None
        woken = True
        try:
            if not ready():
                self.beat()
                self.ctl.poll_pushes()
                if not self.ctl.pushes:
                    events = self.poller.poll(timeout_ms)
                    woken = bool(events)
        finally:
            a[RA_SLEEPING] = 0
        self.bell.drain()
        if self._sig_fd >= 0 and events:
            _drain_fd(self._sig_fd)
        # Woken by the doorbell alone: go straight back to work (the code run after a
        # wake-up runs on a cold cache, so every step here is paid on each cold call).
        # The control socket's fd is edge-triggered, so a push that arrives meanwhile
        # rings it again; the periodic handle_pushes() is the backstop.
        if events is None or not events or any(fd == self._ctl_fd for fd, _ev in events):
            self.handle_pushes()
        return woken

    def wait_cold(self, ch: chan.Channel, seq: int, timeout: float, waker: PeerWaker, serve: bool):
        """The callee is asleep: announce our own sleep, ring it, and block at once.

        The fewer instructions between the ring and our poll(), the likelier the
        kernel runs the woken callee on this (warm) CPU instead of waking an idle
        one, and that is most of a cold call's cost.  Our sleeping flag is up
        before the ring, so the callee's answer always rings us (Dekker, as in
        `_sleep`).  Anything else (inbound calls, a dead channel, the deadline) is
        then left to `wait_response`."""
        areas = self.sleep_areas  # a group's thread sleeps for every member
        for a in areas:
            a[RA_SLEEPING] = 1
        fence()
        waker.bell.ring()
        try:
            if _U64.unpack_from(ch.buf, chan.RESP_SEQ)[0] != seq:
                self.poller.poll(min(IDLE_POLL_MS, max(1, int(timeout * 1000))))
        finally:
            for a in areas:
                a[RA_SLEEPING] = 0
        for b in self.bells:
            b.drain()
        if _U64.unpack_from(ch.buf, chan.RESP_SEQ)[0] == seq:
            return True
        if self.group is not None:
            self.group.handle_pushes()
        else:
            self.handle_pushes()
        return self.wait_response(ch, seq, timeout, spin=False, serve=serve)

    def wait_response(self, ch: chan.Channel, seq: int, timeout: float, spin: bool = True,
                      serve: bool = True) -> bool | None:
        """Wait for the response to request `seq`.  Spin first if the callee is awake
        (the hot path: the answer comes within microseconds); if it was asleep, the
        answer needs it to be scheduled first, so give it the CPU and sleep at once
        (on a machine with few cores a spinning caller delays the very wake-up it
        waits for).  Returns True when the response is there, False at the
        deadline, None if the channel stopped being OPEN without an answer (the
        callee died and the supervisor's fail-in-flight missed this request)."""
        buf = ch.buf
        unpack = _U64.unpack_from
        off = chan.RESP_SEQ
        if unpack(buf, off)[0] == seq:
            return True
        now = time.monotonic_ns
        start = now()
        deadline = start + int(timeout * 1e9)
        spin_end = start + (SPIN_NS if spin else 0)
        serving = serve and (self.group is not None or bool(self.inbound))
        spins = 0
        next_liveness = start + SUPERVISOR_CHECK_NS
        while True:
            if unpack(buf, off)[0] == seq:
                return True
            spins += 1
            if spins & 31:
                continue
            os.sched_yield()
            if serving:
                self.serve_pending()
            if _U32.unpack_from(buf, chan.STATE)[0] != chan.OPEN:
                # The supervisor marks the channel dead, fences, then answers any
                # request it sees; we posted, fenced (in wake), and see the mark.
                # One of the two always sees the other.
                fence()
                return True if unpack(buf, off)[0] == seq else None
            t = now()
            if t > deadline:
                return unpack(buf, off)[0] == seq
            if t > spin_end:
                if spins & 0x3FF == 0:
                    self.beat()
                if t > next_liveness:
                    # The supervisor marks a dead callee's channel; a dead supervisor
                    # cannot, and its domains died with it: find out from its pid.
                    next_liveness = t + SUPERVISOR_CHECK_NS
                    gone = self.ctl.supervisor_gone()
                    if gone:
                        raise InstanceGone(gone)
                wait_ms = max(1, min(IDLE_POLL_MS, (deadline - t) // 1_000_000))
                if serve:
                    self._sleep(wait_ms, lambda: unpack(buf, off)[0] == seq or self._has_inbound())
                else:
                    self._sleep(wait_ms, lambda: unpack(buf, off)[0] == seq
                                or _U32.unpack_from(buf, chan.STATE)[0] != chan.OPEN)
                serving = serve and (self.group is not None or bool(self.inbound))

    def wait_until(self, ready, timeout: float, spin_ns: int = SPIN_NS) -> bool:
        """Spin on `ready()`, then sleep on the doorbell until it holds or `timeout` passes.

        Drivers wait for their device this way: the device rings the doorbell (the
        interrupt) when it completes work.  Inbound calls are *not* served
        meanwhile: a driver waiting on its device inside a call must not be
        re-entered."""
        if ready():
            return True
        now = time.monotonic_ns
        start = now()
        deadline = start + int(timeout * 1e9)
        spin_end = start + spin_ns
        while True:
            for _ in range(16):
                if ready():
                    return True
            os.sched_yield()
            t = now()
            if t > deadline:
                return ready()
            if t > spin_end:
                self._sleep(max(1, min(IDLE_POLL_MS, (deadline - t) // 1_000_000)), ready)

    def doze(self, timeout_s: float) -> bool:
        """Sleep until this domain's doorbell rings (a peer woke it on purpose), a
        control push arrives, or `timeout_s` passes; True if woken early.  For a domain
        waiting on a condition that a peer announces by ringing it (Rv6's programs
        waiting on a pipe or a child: the kernel rings them).  A ring that came before
        the call is not lost: the doorbell stays readable until a sleep drains it."""
        return bool(self._sleep(max(1, int(timeout_s * 1000)), lambda: False))

    def _has_inbound(self) -> bool:
        if self.group is not None:
            return self.group.has_inbound()
        return self.has_own_inbound()

    def has_own_inbound(self) -> bool:
        for ch, _d, _w in self.inbound:
            if _U64.unpack_from(ch.buf, chan.REQ_SEQ)[0] != ch.seq:
                return True
        return False

    def run_forever(self) -> None:
        """The host's main loop: serve, spin a little, then sleep on the doorbell."""
        if self.group is not None:  # a member's own loop that only serves: the group's loop
            self.group.run_forever()
            return
        now = time.monotonic_ns
        idle_since = checked = now()
        spins = 0
        self.handle_pushes()
        while not self.stop:
            if self.serve_pending():
                idle_since = t = now()
                spins += 1
                if t - checked > PUSH_CHECK_NS:  # busy: pushes (faults, members) within ms
                    checked = t
                    self.beat()
                    self.handle_pushes()
                continue
            spins += 1
            if spins & 0x3FF == 0:
                self.beat()
                self.handle_pushes()
            if spins & 15 == 0:
                os.sched_yield()
            if now() - idle_since > SPIN_NS:
                # An idle domain sleeps long, beating before each sleep (see _sleep),
                # often enough for its watchdog (the host sets idle_sleep_ms). After a
                # timeout with nothing to do it goes straight back to sleep.
                if self._sleep(self.idle_sleep_ms, self._has_inbound):
                    idle_since = now()

    def report_hang(self, peer: int) -> None:
        try:
            self.ctl.request("report_hang", callee=peer, timeout_s=2.0)
        except ControlError:
            pass

    def close(self) -> None:
        self.beat()
        self.bell.close()
        for w in self.wakers.values():
            w.bell.close()
        for ch in self.channels.values():  # unused from now on: their memory goes now, not at a collection
            chan.release_segment(ch.buf)
        self.channels.clear()


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 256):
            pass
    except BlockingIOError:
        pass
