"""Lifecycle: spawning, death, restart and boot of domains and devices.

Owns: every state change of an entry (starting, running, stopping, and the death
sequence), the boot queue, the restart decisions (asking policy.py), the shadow
probes of `load --shadow`, and the list of recorded pids for stale cleanup.  Calls
the table, the policy, the zygote link, the channels, the devices, the heap, the
endpoints (replies to waiters, published events) and the loop's timers.

Nothing here waits.  A spawn sends a request to the zygote and leaves the entry
`starting` with the request id; the zygote's "spawned" report completes it (or its
deadline fails it, like a crash during start).  A death runs the DESIGN §3 sequence
in order: mark it dead; fail every call in flight to it; stop its devices' DMA
(asynchronous, see devices.py) and reclaim every heap object it owned; release its
channels; publish DOWN; apply its restart policy.  So any number of deaths, spawn
reports and requests may arrive in any order, each handled as its own event.

Groups (DESIGN §7a): the members of a group share one host process, so several
entries carry the same pid (only entries of their own process are indexed in
`table.by_pid`).  The host's exit is the death of every member; a member that ends
alone (a panic, a clean stop) is reported by the zygote with its id, and dies
through the same sequence while the host goes on.  Stopping a member and injecting
an exception into it are requests to its host (through the zygote); SIGKILL of the
pid (a hang, `kill --how sigkill`, a stop that does not finish) ends the group.

A failed `load` (the domain dies before it is running, whatever its restart policy)
is answered with a one-line error and leaves no entry behind.

Spawned children (`spawn_child`, granted by `may_spawn`): a child is a temporary
domain linked to the incarnation that spawned it.  Its death, once its resources are
reclaimed, is pushed to that spawner (`child_exit`, with the exit code) and its entry
is forgotten; the spawner's death kills its children (they hold only a capability to
it, and a restarted spawner does not know them).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import select
import signal
import time
from dataclasses import dataclass

from redleaf.domains.doorbell import make_bell

from . import stale
from .manifest import DomainSpec, ManifestError, expand_shadow
from .policy import RestartTracker
from .probe import PROBE_TIMEOUT_S, describe_exit
from .table import BACKOFF, CRASHED, FAILED, RUNNING, STARTING, STOPPED, STOPPING, Entry, Refusal
from .zlink import ZygoteLink

STOP_GRACE_S = 2.0
#: children one spawner may have at once (each is a domain: ids are a shared resource)
MAX_CHILDREN = 128

log = logging.getLogger("redleaf.supervisor")


def describe_domain_exit(code: int | None) -> str:
    if code == 0:
        return "exited normally"
    if code == 70:
        return "panicked (undeclared exception), exit status 70"
    if code == 78:
        return "failed to initialise, exit status 78"
    return describe_exit(code)


@dataclass
class Probe:
    """A `load --shadow` waiting for the zygote's probe to name the shadow."""
    spec: DomainSpec
    waiter: tuple
    pid: int = 0


class Lifecycle:
    def __init__(self, sup, table, heap, loop, out, channels, devices, zsock):
        self.sup = sup  # name, paths, token, manifest: read only
        self.table = table
        self.heap = heap
        self.loop = loop
        self.out = out
        self.channels = channels
        self.devices = devices
        self.zygote = ZygoteLink(zsock, on_spawned=self.on_spawned, on_exit=self.on_exit, on_probe=self.on_probe,
                                 on_timeout=self.on_spawn_timeout, on_lost=self.on_zygote_lost,
                                 on_member_exit=self.on_member_exit)
        self.zygote_pid = 0
        #: called with a domain id as it dies, after its calls in flight failed (the
        #: control endpoint answers requests that waited on that domain)
        self.death_hooks: list = []
        self.spawning: dict[int, Entry] = {}  # zygote request id -> entry being started
        self.probes: dict[int, Probe] = {}  # zygote request id -> shadow probe
        self.probe_pids: dict[int, int] = {}  # probe pid -> request id
        self.boot_queue: collections.deque = collections.deque()
        self.boot_waiters: dict[str, list] = {}  # queued name -> load requests to answer
        self._finished_probes: set = set()  # probes answered before their "spawned" report

    # ------------------------------------------------------------------ state
    def set_state(self, e: Entry, state: str, reason: str) -> None:
        if e.state != state or e.reason != reason:
            log.info("domain %s: %s -> %s (%s)", e.name, e.state, state, reason)
        e.state = state
        e.reason = reason
        self.out.publish("STATE", e)

    def answer_waiters(self, e: Entry, reply: dict) -> None:
        waiters, e.waiters = e.waiters, []
        self.out.answer(waiters, reply)

    def new_entry(self, spec: DomainSpec) -> Entry:
        tracker = RestartTracker(spec.restart, spec.max_restarts, spec.period_s, spec.backoff_s, spec.backoff_max_s)
        e = Entry(name=spec.name, kind=spec.kind, spec=spec, tracker=tracker)
        self.table.entries[spec.name] = e
        return e

    def name_taken(self, name: str) -> bool:
        return (name in self.table.entries or any(s.name == name for s in self.boot_queue)
                or any(p.spec.name == name for p in self.probes.values()))

    def record_pids(self) -> None:
        """Keep a list of every process the instance started, for stale cleanup."""
        lines = []
        pids = [self.zygote_pid] + [e.pid for e in self.table.by_pid.values() if e.kind != "client"]
        pids += sorted({e.pid for e in self.table.entries.values() if _grouped(e) and e.pid})
        pids += list(self.probe_pids)
        for pid in pids:
            if pid:
                lines.append(f"{pid} {stale.create_time(pid)}")
        tmp = self.sup.paths.pids.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.sup.paths.pids)

    # ------------------------------------------------------------------ spawn
    def spawn(self, e: Entry) -> None:
        """Ask the zygote for a process; the entry is `starting` until it answers."""
        self.table.assign_id(e)
        paths = self.sup.paths
        make_bell(paths.bell(e.id))
        self.heap.register_domain(e.id)
        e.exports = []
        e.init_error = ""
        e.stop_requested = False
        e.restart_requested = False
        e.hang_reported = False
        e.kill_reason = None
        e.exit_code = None
        e.device = None
        e.hello = None
        spec = dict(e.spec.to_wire(), instance=self.sup.name, domain_id=e.id, cred=e.cred,
                    heap=str(paths.heap), log=str(paths.log(e.name)),
                    watchdog_s=e.spec.watchdog_s or self.sup.manifest.watchdog_s)
        if _grouped(e):
            spec["group_log"] = str(paths.log(f"group.{e.spec.group}"))
        req = self.zygote.spawn(spec)
        e.spawn_req = req
        self.spawning[req] = e
        e.started_at = time.monotonic()
        self.set_state(e, STARTING, "spawn requested")

    def on_spawned(self, req: int, pid: int) -> None:
        if req in self.probes:
            self.probes[req].pid = pid
            self.probe_pids[pid] = req
            self.record_pids()
            return
        e = self.spawning.pop(req, None)
        if e is None or e.spawn_req != req:
            if req in self._finished_probes:
                self._finished_probes.discard(req)
                return
            log.warning("the zygote reported pid %d for an abandoned start; killing it", pid)
            _signal(pid, signal.SIGKILL)
            return
        e.spawn_req = 0
        e.pid = pid
        e.started_at = time.monotonic()
        e.heartbeat = 0
        e.heartbeat_at = e.started_at
        e.psutil_proc = None
        if not _grouped(e):
            self.table.by_pid[pid] = e
        self.record_pids()
        self.set_state(e, STARTING, f"spawned pid {pid}" + (f" (group {e.spec.group})" if _grouped(e) else ""))
        if e.hello is not None:
            ident, rid, claimed = e.hello
            e.hello = None
            if claimed == pid:
                e.ident = ident
                self.out.send(ident, {"ok": True, "rid": rid})
            else:
                self.out.send(ident, {"ok": False, "kind": "AuthError", "rid": rid,
                                      "error": f"domain id {e.id} belongs to pid {pid}, not {claimed}"})
        if e.stop_requested:  # unloaded or stopped while its start was in flight
            self.stop(e, e.reason or "stopped while starting")

    def on_spawn_timeout(self, req: int) -> None:
        if req in self.probes:
            self._probe_failed(req, f"the zygote did not start a probe for it")
            return
        e = self.spawning.pop(req, None)
        if e is None or e.spawn_req != req:
            return
        e.spawn_req = 0
        log.error("the zygote did not report spawning %s; treating it as a failed start", e.name)
        self.begin_death(e, None, "was not spawned in time (the zygote did not answer)", abnormal=True)

    def on_zygote_lost(self) -> None:
        log.critical("the zygote died; shutting down")
        self.loop.stop()

    def ready(self, e: Entry) -> None:
        """Its `ready` arrived: a starting entry is now running."""
        if e.state != STARTING:
            return
        e.ready_at = time.monotonic()
        names = sorted({x["name"] for x in e.exports})
        what = f"serving {', '.join(names)}" if names else ("device ready" if e.kind == "device" else "running")
        self.set_state(e, RUNNING, what)
        reply = {"ok": True, "id": e.id, "pid": e.pid}
        e.load_partner = None  # a shadowed load's driver is up: its load is the shadow's now
        self.answer_waiters(e, reply)
        loads, e.load_waiters = e.load_waiters, []
        self.out.answer(loads, reply)
        self.out.publish("UP", e)
        self.boot_next()

    # ------------------------------------------------------------------ stop
    def stop(self, e: Entry, reason: str) -> None:
        e.stop_requested = True
        self.set_state(e, STOPPING, reason)
        if not e.pid:
            return  # its start is in flight: on_spawned stops it
        pid = e.pid
        if _grouped(e):  # one member of a shared process: its host stops it alone
            self.zygote.member(e.id, "stop")
        else:
            _signal(pid, signal.SIGTERM)
        self.loop.after(STOP_GRACE_S, self._stop_timeout, e, pid)

    def _stop_timeout(self, e: Entry, pid: int) -> None:
        if e.pid == pid and e.alive:
            extra = f" (and with it group {e.spec.group}: {', '.join(self.group_members(e))})" if _grouped(e) else ""
            log.warning("%s did not stop within %.1fs; SIGKILL%s", e.name, STOP_GRACE_S, extra)
            _signal(pid, signal.SIGKILL)

    def group_members(self, e: Entry) -> list[str]:
        """The names of the entries that share e's process (e's group), e included."""
        if not _grouped(e) or not e.pid:
            return [e.name]
        return sorted(x.name for x in self.table.entries.values() if x.pid == e.pid and _grouped(x))

    def inject(self, e: Entry, how: str) -> None:
        """`redleaf kill NAME --how exception|exit|hang` on a group member: its host
        raises the panic in that member only (or ends it cleanly, or hangs its
        thread, which is the whole group's, as a hang in RedLeaf hangs its core)."""
        self.zygote.member(e.id, "fault", how)

    def kill_hung(self, e: Entry, why: str) -> None:
        """Kill a domain found hung (watchdog, or a caller's deadline)."""
        if not e.pid:
            return
        if _grouped(e):
            log.warning("%s (pid %d, group %s): %s; killing the group's process, and with it %s", e.name, e.pid,
                        e.spec.group, why, ", ".join(self.group_members(e)))
        else:
            log.warning("%s (pid %d): %s; killing it", e.name, e.pid, why)
        e.hang_reported = True
        e.kill_reason = f"killed as hung ({why})"
        _signal(e.pid, signal.SIGKILL)

    def _note_in_log(self, e: Entry, text: str) -> None:
        import datetime

        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        try:
            fd = os.open(self.sup.paths.log(e.name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{stamp} [supervisor] {e.name} {text}\n".encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # a log is a convenience; the death is handled regardless

    def kill_dependents(self, dev: Entry) -> None:
        """A device died: the drivers bound to it lose it, as a driver loses a card
        that is surprise-removed, and are restarted with it (the kernel would unbind
        and re-probe). Their memory the device wrote into goes back through the usual
        death path; with a shadow, the clients never notice."""
        for drv in list(self.table.by_id.values()):
            if drv is dev or dev.name not in drv.bound_devices or not drv.pid:
                continue
            why = f"its device {dev.name} died; the driver is unbound and restarted with it"
            log.warning("%s (pid %d): %s", drv.name, drv.pid, why)
            drv.kill_reason = f"killed: {why}"
            _signal(drv.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ death
    def on_exit(self, pid: int, code: int) -> None:
        if pid in self.probe_pids:
            self._probe_exited(pid, code)
            return
        members = [x for x in self.table.entries.values() if _grouped(x) and x.pid == pid]
        if members:  # a group's host: every member dies, each by its own sequence and policy
            how = describe_domain_exit(code)
            for x in members:
                self.begin_death(x, code, f"{how} (its group {x.spec.group}'s host process)")
            return
        e = self.table.by_pid.get(pid)
        if e is None or e.kind == "client":
            return  # an abandoned start's process; nothing of ours holds it
        self.begin_death(e, code, describe_domain_exit(code))

    def on_member_exit(self, did: int, pid: int, code: int) -> None:
        """One member of group host `pid` ended alone; the host goes on."""
        e = self.table.by_id.get(did)
        if e is None or e.pid != pid or not _grouped(e):
            return  # a report about an incarnation that is already gone
        self.begin_death(e, code, f"{describe_domain_exit(code)} in group {e.spec.group} (the others go on)")

    def on_client_gone(self, e: Entry) -> None:
        # A pidfd is readable only once its process has exited; check, since a poll
        # round may report an fd that an earlier handler closed and an attach reused.
        if e.pidfd < 0 or not select.select([e.pidfd], [], [], 0)[0]:
            return
        self.begin_death(e, None, "client process exited")

    def begin_death(self, e: Entry, code: int | None, how: str, abnormal: bool | None = None) -> None:
        if e.dying or not e.id:
            return
        e.dying = True
        did, pid = e.id, e.pid
        requested = e.stop_requested
        if abnormal is None:
            abnormal = code != 0 if code is not None else (e.kind == "client" and not requested)
        if e.kill_reason:
            how = e.kill_reason
        # the death and its cause in the domain's own log too (a process killed by a
        # signal writes nothing), with the supervisor's log the same words
        if pid and e.kind != "client":
            self._note_in_log(e, f"pid {pid} {how}")
        # 1. mark it dead
        e.exit_code = code
        if pid and self.table.by_pid.get(pid) is e:  # a group member shares its pid
            self.table.by_pid.pop(pid, None)
        e.pid = 0
        stopped = requested and not e.restart_requested and not abnormal
        self.set_state(e, STOPPED if stopped or not abnormal else CRASHED, f"pid {pid} {how}" if pid else how)
        if e.pidfd >= 0:
            self.loop.remove_reader(e.pidfd)
            os.close(e.pidfd)
            e.pidfd = -1
        # its spawned children die with it (their one capability is gone)
        self.kill_children(e, did)
        # 2. fail every call in flight to it (and mark the channels it called through),
        # and answer what waited on it (an `inject` waiting for its acknowledgement)
        self.channels.party_died(did)
        for hook in self.death_hooks:
            hook(did)
        if e.kind == "device":
            self.kill_dependents(e)
        # 3. stop its devices' DMA into its memory, then reclaim that memory
        self.devices.quiesce(e, lambda: self._finish_death(e, did, code, how, abnormal, requested))

    def _finish_death(self, e: Entry, did: int, code, how: str, abnormal: bool, requested: bool) -> None:
        t0 = time.perf_counter()
        report = self.heap.reclaim(did, borrow_active=self.channels.borrow_active)
        for slot, borrower in getattr(report, "deferred", []):
            self.channels.defer(did, slot, borrower)
        log.info("reclaimed domain %s (id %d): %s in %.1f ms", e.name, did, report, (time.perf_counter() - t0) * 1e3)
        # 4. release its channels
        self.channels.release_unused()
        try:
            os.unlink(self.sup.paths.bell(did))
        except FileNotFoundError:
            pass
        self.table.release_id(e)
        e.dying = False
        self.record_pids()
        # 5. publish DOWN, only now that everything is released
        self.out.publish("DOWN", e, code=code, how=how)
        if e.spawner is not None:  # a child: never restarted, its spawner is told
            self._tell_spawner(e, did, code)
            self.set_state(e, STOPPED, e.reason)
            self.answer_waiters(e, {"ok": True, "state": STOPPED})  # an operator's unload
            self.table.forget(e)
            return
        # 6. the restart policy
        if e.kind == "client":
            if self.table.entries.get(e.name) is e:
                del self.table.entries[e.name]
            return
        self.after_exit(e, abnormal, requested or e.stop_requested)  # unloaded while dying

    def after_exit(self, e: Entry, abnormal: bool, requested: bool) -> None:
        if e.load_waiters or e.load_partner:
            self._load_failed(e, requested)
            return
        if e.restart_requested:
            self.spawn_or_fail(e)  # its waiters are answered when it runs again
            return
        decision = e.tracker.on_exit(time.monotonic(), abnormal, requested)
        if requested or decision.action == "stop":
            self.set_state(e, STOPPED, decision.reason if not requested else e.reason)
            self.answer_waiters(e, {"ok": True, "state": STOPPED})
            if e.spec.restart == "temporary" and requested:
                self.table.forget(e)
            self.boot_next()
            return
        if decision.action == "fail":
            self.set_state(e, FAILED, decision.reason)
            err = e.init_error or decision.reason
            self.answer_waiters(e, {"ok": False, "kind": "DomainFailed", "error": f"{e.name} failed: {err}"})
            self.boot_next()
            return
        if e.init_error and e.waiters:
            # a restart on request whose constructor raised: report it instead of looping
            self.set_state(e, FAILED, f"initialisation failed: {e.init_error}")
            self.answer_waiters(e, {"ok": False, "kind": "InitFailed",
                                    "error": f"{e.name} failed to start: {e.init_error}"})
            self.boot_next()
            return
        e.restarts += 1
        self.set_state(e, BACKOFF, f"{decision.reason}; restarting in {decision.delay_s * 1000:.0f} ms")
        if decision.delay_s <= 0:
            self.restart_now(e)
        else:
            self.loop.after(decision.delay_s, self.restart_now, e)

    def _load_failed(self, e: Entry, requested: bool) -> None:
        """A loaded domain died before it ran: one error for the loader, no entry left."""
        if requested:
            kind, err = "LoadFailed", f"{e.name} was unloaded before it started"
        elif e.init_error:
            kind, err = "InitFailed", f"{e.name} failed to start: {e.init_error}"
        else:
            kind, err = "LoadFailed", f"{e.name} failed to start: its process {re.sub(r'^pid [0-9]+ ', '', e.reason)}"
        err = err.splitlines()[0]
        self.set_state(e, FAILED, err)
        loads, e.load_waiters = e.load_waiters, []
        self.out.answer(loads, {"ok": False, "kind": kind, "error": err})
        self.answer_waiters(e, {"ok": True, "state": STOPPED} if requested else {"ok": False, "kind": kind, "error": err})
        if e.load_partner:  # a shadowed load's driver failed: so does the shadow's load
            self.boot_queue = collections.deque(s for s in self.boot_queue if s.name != e.load_partner)
            self.out.answer(self.boot_waiters.pop(e.load_partner, []), {"ok": False, "kind": kind, "error": err})
        companion = self.table.entries.get(e.spec.companion) if e.spec.companion else None
        if companion is not None:  # a shadow that failed to load takes its driver with it
            self.unload(companion, None)
        self.table.forget(e)
        self.boot_next()

    def spawn_or_fail(self, e: Entry) -> None:
        try:
            self.spawn(e)
        except Refusal as r:
            self.set_state(e, FAILED, str(r))
            self.answer_waiters(e, {"ok": False, "kind": r.kind, "error": str(r)})

    def restart_now(self, e: Entry) -> None:
        if e.state != BACKOFF or not self.loop.running or self.table.entries.get(e.name) is not e:
            return
        self.spawn_or_fail(e)

    # ------------------------------------------------------------------ children
    def spawn_child(self, parent: Entry, spec: DomainSpec) -> Entry:
        """Start `spec` as a child of `parent` (already checked by the control layer)."""
        live = sum(1 for x in self.table.entries.values() if x.spawner is parent and x.spawner_id == parent.id)
        if live >= MAX_CHILDREN:
            raise Refusal("Exhausted", f"{parent.name} has {live} children running, the most it may have")
        e = self.new_entry(spec)
        e.spawner = parent
        e.spawner_id = parent.id
        try:
            self.spawn(e)
        except Refusal:
            e.spawner = None
            self.table.forget(e)
            raise
        return e

    def kill_children(self, parent: Entry, parent_id: int) -> None:
        for x in list(self.table.entries.values()):
            if x.spawner is parent and x.spawner_id == parent_id and x.alive:
                x.kill_reason = f"killed: its spawner {parent.name} died"
                if x.pid:
                    _signal(x.pid, signal.SIGKILL)
                else:
                    self.stop(x, x.kill_reason)  # its start is in flight: on_spawned stops it

    def kill_child(self, child: Entry) -> None:
        child.kill_reason = "killed by its spawner"
        if child.pid:
            _signal(child.pid, signal.SIGKILL)
        elif child.alive:
            self.stop(child, child.kill_reason)

    def _tell_spawner(self, e: Entry, did: int, code) -> None:
        p = e.spawner
        e.spawner = None
        if p is None or p.id != e.spawner_id or not p.alive or p.ident is None:
            return  # the incarnation that spawned it is gone: nobody to tell
        self.out.send(p.ident, {"push": "child_exit", "child": did, "name": e.name,
                                "code": code, "how": e.reason})
        self.channels.ring(p.id)

    # ------------------------------------------------------------------ requests
    def load(self, spec: DomainSpec, waiter: tuple) -> None:
        """Start a loaded domain; `waiter` is answered once it runs or fails."""
        if spec.shadow:
            log_path = str(self.sup.paths.log(spec.name))
            req = self.zygote.probe(spec.target, spec.path, log_path)
            self.probes[req] = Probe(spec, waiter)
            self.loop.after(PROBE_TIMEOUT_S, self._probe_deadline, req)
            return
        e = self.new_entry(spec)
        e.load_waiters.append(waiter)
        try:
            self.spawn(e)
        except Refusal:
            self.table.forget(e)
            raise

    def unload(self, e: Entry, waiter) -> dict | None:
        e.stop_requested = True
        e.spec.restart = "temporary"
        e.tracker.policy = "temporary"
        if e.alive or e.dying:
            if waiter is not None:
                e.waiters.append(waiter)
            if e.alive:
                self.stop(e, "unloaded on request")
            return None
        self.table.forget(e)
        return {"state": e.state}

    def restart(self, e: Entry, waiter) -> None:
        e.waiters.append(waiter)
        if e.alive:
            e.restart_requested = True
            self.stop(e, "restart requested")
        elif e.dying:
            e.restart_requested = True  # after_exit starts it once the death is finished
        else:
            e.tracker.history.clear()
            self.spawn_or_fail(e)

    # ------------------------------------------------------------------ shadow probes
    def on_probe(self, req: int, result: dict) -> None:
        p = self._end_probe(req)
        if p is None:
            return
        if "error" in result:
            self._answer_probe(p, "BadRequest", f"domain {p.spec.name}: shadow = true needs the driver class "
                                                f"to import: {result['error']}")
            return
        try:
            specs = expand_shadow(p.spec, result.get("shadow"))
        except ManifestError as ex:
            self._answer_probe(p, "BadRequest", str(ex))
            return
        for s in specs:
            if self.name_taken(s.name):
                self._answer_probe(p, "Conflict", f"a domain named {s.name!r} already exists; unload it first")
                return
        driver_spec, public = specs
        driver = self.new_entry(driver_spec)
        driver.load_partner = public.name  # a driver that fails to start fails this load
        try:
            self.spawn(driver)
        except Refusal as r:
            self.table.forget(driver)
            self._answer_probe(p, r.kind, str(r))
            return
        # the shadow boots once the driver is up (boot_next waits for starting entries)
        self.boot_queue.append(public)
        self.boot_waiters[public.name] = [p.waiter]

    def _end_probe(self, req: int) -> Probe | None:
        p = self.probes.pop(req, None)
        if p is None:
            return None
        self._finished_probes.add(req)
        if p.pid:
            self.probe_pids.pop(p.pid, None)
            self._finished_probes.discard(req)  # its "spawned" came already
        return p

    def _answer_probe(self, p: Probe, kind: str, err: str) -> None:
        log.warning("load of %s refused: %s", p.spec.name, err)
        self.out.answer([p.waiter], {"ok": False, "kind": kind, "error": err.splitlines()[0]})

    def _probe_failed(self, req: int, why: str) -> None:
        p = self._end_probe(req)
        if p is not None:
            if p.pid:
                _signal(p.pid, signal.SIGKILL)
            self._answer_probe(p, "BadRequest", f"domain {p.spec.name}: shadow = true needs the driver class to "
                                                f"import, but importing {p.spec.target} {why}")

    def _probe_exited(self, pid: int, code: int) -> None:
        req = self.probe_pids.pop(pid)
        if req in self.probes:  # it died without an answer
            self._probe_failed(req, describe_exit(code))
        self.record_pids()

    def _probe_deadline(self, req: int) -> None:
        if req in self.probes:
            self._probe_failed(req, f"did not finish within {PROBE_TIMEOUT_S:g}s")

    # ------------------------------------------------------------------ boot
    def boot_next(self) -> None:
        """Boot the manifest one entry at a time, each after what it uses is serving."""
        while self.boot_queue:
            if any(x.state == STARTING for x in self.table.entries.values() if x.kind != "client"):
                return
            spec = self.boot_queue.popleft()
            waiters = self.boot_waiters.pop(spec.name, [])
            try:
                if spec.name in self.table.entries:
                    raise Refusal("Conflict", f"a domain named {spec.name!r} appeared while it waited to boot")
                e = self.new_entry(spec)
                e.load_waiters.extend(waiters)
                self.spawn(e)
            except Refusal as r:
                log.error("cannot boot %s: %s", spec.name, r)
                self.out.answer(waiters, {"ok": False, "kind": r.kind, "error": str(r)})
                continue
            return


def _grouped(e: Entry) -> bool:
    return e.spec is not None and bool(getattr(e.spec, "group", None))


def _signal(pid: int, sig: int) -> None:
    """Signal one process; never pid 0 or below (that would hit a whole group)."""
    if pid <= 0:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
