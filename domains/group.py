"""A group host: several domains in one process, isolated by language (DESIGN §7a).

The zygote forks one host per manifest `group` and sends it each member's spec over
a socketpair (supervisor/zygote.py).  Each member is a full domain: its own domain
id, control connection, heap view (objects are owned per domain id), doorbell,
runtime area, exports and inbound channels (runtime.Runtime), and the DomainContext
host.py gives any domain.  What the members share is this process and its one
thread, as RedLeaf's domains share an address space:

- serving: one loop serves every member's inbound channels (calls from other
  processes), and a wait inside any member serves them too (so re-entrant calls
  across a group and across processes cannot deadlock);
- calls between members go through LocalLink (domains/local_link.py): the same
  proxies, validation and ownership moves, on this thread, with `current`, the
  acting domain, set to the callee while its code runs;
- faults: a panic (an undeclared exception, proxy.panic -> DomainPanic) unwinds to
  the boundary where the acting domain was entered (a LocalLink, the serve loop, the
  member's own `run` loop, its constructor), and ends that member alone: its object
  and runtime are dropped, its doorbell and control connection closed, and the host
  reports {"member_exit": id, "code": 70} to the zygote, which relays it to the
  supervisor; the supervisor fails calls in flight to it, reclaims its heap objects
  by owner id and restarts it by policy, in this process (the zygote sends the new
  incarnation here).  A process-level fault (SIGKILL, a segfault, os._exit) ends the
  group: each member dies and restarts by its own policy.  A hang hangs the thread,
  hence the group, and the watchdog kills the process;
- requests from the supervisor for one member (through the zygote): "stop" ends it
  cleanly, "fault" with how = exception panics it (at once if it has no frame on the
  thread, else as control returns into it), exit ends it with status 0, hang hangs
  the thread.

At most one member may run a loop of its own (`run()`): the thread is the group's,
and that loop, calling serve_pending, serves all the others.

May call: domains.host (DomainContext, import_target, connect_runtime),
domains.runtime, domains.proxy, domains.doorbell, domains.local_link (through
Runtime.lookup).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
import traceback

import msgpack

from .doorbell import RA_SLEEPING, fence
from .errors import ControlError
from .proxy import DomainPanic, set_panic_hook

SPIN_NS = 1_000_000
#: how often a busy loop reads its control pushes (a fault to arm, a member to add)
PUSH_CHECK_NS = 5_000_000
IDLE_POLL_MS = 100
#: a host left without members exits after this long (the zygote forks a new one
#: for the group's next spec; one that arrives meanwhile dies with this host, and
#: the supervisor restarts it by policy like any member of a dead host)
EMPTY_EXIT_S = 5.0


class Member:
    __slots__ = ("id", "name", "spec", "rt", "obj", "alive", "depth", "exports")

    def __init__(self, spec: dict, rt):
        self.id = spec["domain_id"]
        self.name = spec["name"]
        self.spec = spec
        self.rt = rt
        self.obj = None
        self.alive = True
        self.depth = 0  # frames of this member on the thread (entered, not yet left)
        self.exports: list = []


class Group:
    def __init__(self, name: str, sock: socket.socket):
        self.name = name
        self.sock = sock
        self.members: dict[int, Member] = {}
        self.order: list[Member] = []  # the members, for the serve loop
        self.by_export: dict[tuple[str, str], tuple[Member, object]] = {}
        self.local: set[str] = set()  # names ever exported in this group (see is_local)
        self.current = 0  # the acting domain: whose code runs now (0: the host's own)
        self.doomed: set[int] = set()  # members with an injected fault still to fire
        self.runner: Member | None = None  # the member whose own run() loop drives the thread
        self.stop = False
        self.sleep_areas: list = []  # shared with every member runtime (see Runtime.sleep_areas)
        self.bells: list = []
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)
        self._ctl_fds: set[int] = set()
        self.empty_since = None

    # -- membership ------------------------------------------------------------------
    def is_local(self, name: str) -> bool:
        """Is `name` placed in this group?  A name once exported here stays here (the
        manifest places it; a member restarting is briefly absent, and a lookup then
        gets DomainUnavailable, as a caller of a restarting domain does)."""
        return name in self.local

    def resolve(self, name: str, iface_name: str):
        return self.by_export.get((name, iface_name))

    def member_alive(self, did: int) -> bool:
        m = self.members.get(did)
        return m is not None and m.alive

    def add_member(self, spec: dict) -> None:
        from .host import DomainContext, connect_runtime, import_target

        name = spec["name"]
        print(f"redleaf: group {self.name}: domain {name} (id {spec['domain_id']}) starting {spec['target']}",
              flush=True)
        try:
            rt = connect_runtime(spec)
        except (ControlError, OSError, ValueError) as e:  # refused (e.g. a stale id): nothing was built
            print(f"redleaf: group {self.name}: {name} could not join: {e}", flush=True)
            self._report(spec["domain_id"], 78)
            return
        m = Member(spec, rt)
        self._join(m)
        prev, self.current = self.current, m.id
        m.depth += 1
        try:
            cls = import_target(spec["target"], spec.get("path"))
            ctx = DomainContext(rt, name, spec.get("config") or {}, spec.get("uses") or {})
            obj = cls(ctx)
            if callable(getattr(obj, "run", None)) and self.runner is not None and self.runner.alive:
                raise RuntimeError(f"group {self.name} already runs the loop of {self.runner.name}; "
                                   f"a group has one thread: put {name} in another group or its own process")
        except BaseException as e:  # noqa: BLE001 - a constructor's failure ends this member only
            traceback.print_exc()
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            m.depth -= 1
            self.current = prev
            try:
                rt.ctl.request("init_failed", domain_id=rt.domain_id, error=msg, timeout_s=2.0)
            except ControlError:
                pass
            self.end_member(m, 78, "failed to initialise")
            return
        m.depth -= 1
        self.current = prev
        m.obj = obj
        if not rt.exports:
            try:
                rt.export(name, obj)
            except Exception:  # noqa: BLE001 - a domain that exports nothing is fine
                pass
        for e in rt.exports.values():
            self.by_export[(e.name, e.spec.name)] = (m, e)
            self.local.add(e.name)
        m.exports = list(rt.exports)
        rt.ctl.request("ready", domain_id=rt.domain_id, exports=rt.export_list())
        if callable(getattr(obj, "run", None)):
            self.runner = m
        print(f"redleaf: group {self.name}: domain {name} serving "
              f"{', '.join(sorted({n for n, _i in rt.exports})) or 'nothing'}", flush=True)

    def _join(self, m: Member) -> None:
        rt = m.rt
        rt.group = self
        self.members[m.id] = m
        self.order = [x for x in self.members.values() if x.alive]
        self.sleep_areas.append(rt.area)
        self.bells.append(rt.bell)
        rt.sleep_areas = self.sleep_areas
        rt.bells = self.bells
        rt.poller = self.poller
        self.poller.register(rt.bell.fd, select.POLLIN)
        self.poller.register(rt._ctl_fd, select.POLLIN)
        self._ctl_fds.add(rt._ctl_fd)
        self.empty_since = None

    def end_member(self, m: Member, code: int, why: str) -> None:
        """End one member: drop what it held, tell the supervisor (via the zygote)."""
        if not m.alive:
            return
        m.alive = False
        rt = m.rt
        self.members.pop(m.id, None)
        self.order = [x for x in self.members.values() if x.alive]
        self.doomed.discard(m.id)
        for key in [k for k, (mm, _e) in self.by_export.items() if mm is m]:
            del self.by_export[key]
        if self.runner is m:
            self.runner = None
        if rt.area in self.sleep_areas:
            self.sleep_areas.remove(rt.area)
        if rt.bell in self.bells:
            self.bells.remove(rt.bell)
        for fd in (rt.bell.fd, rt._ctl_fd):
            try:
                self.poller.unregister(fd)
            except (KeyError, ValueError):
                pass
        self._ctl_fds.discard(rt._ctl_fd)
        if code == 0 and m.obj is not None:  # a clean stop: its shutdown runs, as in host.main
            stop = getattr(m.obj, "shutdown", None)
            if callable(stop):
                try:
                    stop()
                except Exception:  # noqa: BLE001 - it is ending anyway
                    traceback.print_exc()
        # Drop the domain's object, its exports and the proxies it held: nothing of it
        # may run again, and its heap handles die with it (the supervisor frees the
        # objects by owner id; no handle here writes the heap as it again).
        m.obj = None
        rt.exports.clear()
        rt.inbound = []
        rt.inbound_by_id.clear()
        rt.links.clear()
        rt.deferred = []
        rt.stop = True
        rt.group = None
        try:
            rt.beat_own()
            rt.bell.close()
            for w in rt.wakers.values():
                w.bell.close()
        except OSError:
            pass
        print(f"redleaf: group {self.name}: domain {m.name} (id {m.id}) {why}; the others go on", flush=True)
        self._report(m.id, code)
        try:
            rt.ctl.sock.close(0)
        except Exception:  # noqa: BLE001 - closing a socket of a domain that is gone
            pass
        if not self.members and self.empty_since is None:
            self.empty_since = time.monotonic()

    def _report(self, did: int, code: int) -> None:
        try:
            self.sock.send(msgpack.packb({"member_exit": did, "code": code}))
        except OSError:
            os._exit(code)  # the zygote is gone: so is the instance

    # -- the acting domain and its faults ---------------------------------------------
    def panic_hook(self, reason: str) -> None:
        """proxy.panic in a group: the acting domain panics, not the process."""
        if self.current and self.current in self.members:
            raise DomainPanic(self.current, reason)
        sys.stderr.write(f"redleaf: group {self.name}: panic outside any domain: {reason}\n")
        sys.stderr.flush()
        os._exit(70)

    def fire_doomed(self, did: int) -> None:
        if did in self.doomed:
            self.doomed.discard(did)
            raise DomainPanic(did, "fault injected by `redleaf kill --how exception`")

    def fault(self, m: Member, how: str) -> None:
        if how == "exception":
            if m.depth == 0:
                sys.stderr.write(f"redleaf: domain panic: fault injected into {m.name} by `redleaf kill`\n")
                self.end_member(m, 70, "panicked (fault injected by `redleaf kill --how exception`)")
            else:  # it has frames on the thread: it panics as control returns into it
                self.doomed.add(m.id)
        elif how == "exit":
            self.end_member(m, 0, "exited (`redleaf kill --how exit`)")
        elif how == "hang":
            print(f"redleaf: group {self.name}: {m.name} hangs the group's thread (`redleaf kill --how hang`)",
                  flush=True)
            while True:
                pass

    # -- serving, sleeping, heartbeats ------------------------------------------------
    def serve_all(self) -> int:
        n = 0
        prev = self.current
        for m in self.order:
            if not m.alive or not m.rt.inbound:
                continue
            self.current = m.id
            m.depth += 1
            try:
                n += m.rt.serve_own()
                if self.doomed:
                    self.fire_doomed(m.id)
            except DomainPanic as p:
                if p.domain != m.id:
                    raise
                m.depth -= 1
                self.current = prev
                self.end_member(m, 70, f"panicked ({p.reason})")
                continue
            m.depth -= 1
            self.current = prev
        return n

    def has_inbound(self) -> bool:
        for m in self.order:
            if m.rt.has_own_inbound():
                return True
        return False

    def beat_all(self) -> None:
        for m in self.order:
            m.rt.beat_own()

    def sleep(self, timeout_ms: int, ready) -> None:
        """Block on every member's doorbell (and control socket, and the zygote's)
        unless `ready()` turns true after announcing every member asleep."""
        areas = self.sleep_areas
        for a in areas:
            a[RA_SLEEPING] = 1
        fence()
        events = None
        try:
            if not ready():
                self.beat_all()
                pending = False
                for m in self.order:
                    m.rt.ctl.poll_pushes()
                    pending = pending or bool(m.rt.ctl.pushes)
                if not pending:
                    events = self.poller.poll(timeout_ms)
        finally:
            for a in areas:
                a[RA_SLEEPING] = 0
        for b in self.bells:
            b.drain()
        bells = {b.fd for b in self.bells}
        if events is None or not events or any(fd not in bells for fd, _ev in events):
            self.handle_pushes()

    def handle_pushes(self) -> None:
        """Control notices of every member, and the zygote's requests."""
        for m in list(self.order):
            if m.alive:
                m.rt.handle_pushes()
                if m.rt.stop and not self.stop and m.alive and m.depth == 0:
                    self.end_member(m, 0, "stopped on request")
        while True:
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:  # the zygote is gone, and with it the instance
                os._exit(0)
            msg = msgpack.unpackb(data, raw=False)
            if "add" in msg:
                self.add_member(msg["add"])
            elif "member" in msg:
                req = msg["member"]
                m = self.members.get(req.get("domain_id"))
                if m is None:
                    continue
                if req.get("op") == "stop":
                    if m.depth == 0:
                        self.end_member(m, 0, "stopped on request")
                    else:
                        m.rt.stop = True  # its own loop sees it
                elif req.get("op") == "fault":
                    self.fault(m, req.get("how", ""))

    def run_forever(self) -> None:
        """The host's loop: run the member that has a loop of its own (its loop serves
        the rest), else serve, spin a little, and sleep on every doorbell."""
        now = time.monotonic_ns
        idle_since = checked = now()
        spins = 0
        self.handle_pushes()
        while not self.stop:
            r = self.runner
            if r is not None and r.alive and r.depth == 0:
                self._run_runner(r)
                idle_since = now()
                continue
            if self.serve_all():
                idle_since = t = now()
                spins += 1
                if t - checked > PUSH_CHECK_NS:  # busy: pushes (faults, members) within ms
                    checked = t
                    self.beat_all()
                    self.handle_pushes()
                continue
            spins += 1
            if spins & 0x3FF == 0:
                self.beat_all()
                self.handle_pushes()
            if spins & 15 == 0:
                os.sched_yield()
            if now() - idle_since > SPIN_NS:
                self.sleep(IDLE_POLL_MS, self.has_inbound)
                idle_since = now()
                if self.empty_since is not None and time.monotonic() - self.empty_since > EMPTY_EXIT_S:
                    return

    def _run_runner(self, m: Member) -> None:
        prev, self.current = self.current, m.id
        m.depth += 1
        try:
            m.obj.run()
        except BaseException as e:  # noqa: BLE001 - its loop raising is its panic
            m.depth -= 1
            self.current = prev
            if not isinstance(e, DomainPanic):
                traceback.print_exc()
            if self.stop:
                return
            self.end_member(m, 70, f"panicked (its loop raised {type(e).__name__})")
            return
        m.depth -= 1
        self.current = prev
        if m.alive and not self.stop:
            self.end_member(m, 0, "finished its loop")

    def close(self) -> None:
        for m in list(self.members.values()):
            self.end_member(m, 0, "stopped with its group")


def main(spec: dict, sock: socket.socket) -> int:
    """The group host process (forked by the zygote with the group's first spec)."""
    from .host import InjectedFault, SIG_HANG

    g = Group(spec["group"], sock)
    set_panic_hook(g.panic_hook)

    def term(*_):
        g.stop = True
        for m in g.order:
            m.rt.stop = True

    def exc(*_):  # a process-wide signal: the acting domain's fault, if any runs
        if g.current:
            raise InjectedFault("fault injected by signal")

    def hang(*_):
        while True:
            pass

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGUSR1, exc)
    signal.signal(signal.SIGUSR2, lambda *_: os._exit(0))
    signal.signal(SIG_HANG, hang)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"redleaf: group {g.name} host (pid {os.getpid()}) starting", flush=True)
    g.add_member(spec)
    g.run_forever()
    g.close()
    print(f"redleaf: group {g.name} host stopped", flush=True)
    return 0
