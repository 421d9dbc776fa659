"""A campaign: the I/O shell around the plan (schedule.py) and the checks
(invariants.py).

It boots the workload's instance (or joins the one `--name` names), starts the
workload's client loop, and fires the plan wave by wave: each fault through the
supervisor's control endpoint (`kill` for signals, `inject` for faults inside a call)
or, for `stop`, SIGSTOP and a later SIGCONT of the target's pid.  After each wave it
waits until every entry has settled (its targets back RUNNING), takes snapshots
(`status`, `heap --check`, the workload's record) and checks the invariants; at the
end it stops the workload, re-checks, brings the instance down (if it booted it) and
checks that nothing was left behind.  Everything goes into a CampaignRecord, which
report.py turns into text, JSON and plots.

With `--clients N` it also runs N extra attached client processes (clients.py),
targets like the domains: one a fault ended is checked for leftovers once the
supervisor dropped it, then replaced.  A `supervisor` fault kills the supervisor and
runs `up` of the same instance again (only for an instance it booted): the dead
one's processes and files must be gone, and the workload re-attaches.

May call: supervisor.instance, domains (control client, errors), crashtest.schedule,
crashtest.invariants, crashtest.workloads, crashtest.clients.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field

from redleaf.domains.errors import ControlError

from . import invariants as inv
from .schedule import IN_CALL_KINDS, INSTANCE_KINDS, Fault, make_plan, resolve_targets, waves

#: how long a wave's targets may take to come back (an in-call hang waits for its
#: caller's deadline, up to 30 s behind a shadow, then the hang is confirmed)
RECOVER_S = 60.0
#: how long an armed in-call fault may wait for the workload to make the call
FIRE_S = 5.0
#: a call may overrun its deadline by this much before its caller counts as hung
GRACE_S = 15.0
POLL_S = 0.01


@dataclass
class Options:
    workload: str = "echo"
    name: str | None = None
    targets: str | None = None
    kinds: tuple = ()
    schedule: str = "fixed"
    rate: float | None = None
    count: int | None = None
    duration: float | None = None
    seed: int = 0
    replay: tuple[int, ...] | None = None  # fault indices: one, or the faults of one wave
    stall_s: float = 2.0
    clients: int = 0  # extra attached client processes, targets too (clients.py)


@dataclass
class FaultResult:
    index: int
    wave: int
    kind: str
    target: str
    how: str = ""  # "kill sigkill", "inject exception at call 2 of checksum", "sigstop 0.2s", "skipped: ..."
    fired_at: float = 0.0  # seconds from the campaign's start
    recovered_s: float | None = None  # fault fired -> target running again (a new pid if it died)
    restarted: bool = False
    held_s: float = 0.0  # SIGSTOP: how long before SIGCONT (then the same process is back)
    fire_log: tuple | None = None  # a fault inside a call: (target's log, its size when armed)
    fired_in_call_at: float | None = None  # when the target's log showed the armed fault fire
    errors_expected: int = 0
    errors_unexpected: int = 0


@dataclass
class Violation:
    seed: int
    fault: int | None  # the (first) fault of the wave it was found after; None: found at the end
    kind: str  # the wave's kinds, "+"-joined
    target: str  # the wave's targets, ","-joined
    what: str
    wave: tuple = ()  # every fault of that wave: replayed together, as they fired

    def replay_args(self) -> str:
        if self.fault is None:
            return f"--seed {self.seed}"
        return f"--seed {self.seed} --replay {','.join(map(str, self.wave or (self.fault,)))}"


@dataclass
class CampaignRecord:
    options: dict
    instance: str = ""
    booted: bool = False
    plan_size: int = 0
    started_wall: float = 0.0
    elapsed_s: float = 0.0
    faults: list = field(default_factory=list)  # FaultResult
    violations: list = field(default_factory=list)  # Violation
    ops: int = 0
    buckets: dict = field(default_factory=dict)  # bucket index -> calls completed
    bucket_s: float = 0.1
    errors_by_kind: dict = field(default_factory=dict)  # (kind, expected) -> count
    unexpected_errors: list = field(default_factory=list)  # first few (time, kind, message)
    workload_stats: dict = field(default_factory=dict)  # the workload's own counts (Workload.stats)


class Campaign:
    def __init__(self, opts: Options, progress=None):
        from . import workloads

        self.opts = opts
        self.progress = progress or (lambda event, **kw: None)
        plan = make_plan(opts.seed, kinds=opts.kinds or _all_kinds(), schedule=opts.schedule,
                         rate=opts.rate, count=opts.count, duration=opts.duration)
        if opts.replay is not None:
            bad = [k for k in opts.replay if not 0 <= k < len(plan)]
            if bad or not opts.replay:
                raise ValueError(f"--replay {','.join(map(str, opts.replay))}: the plan of seed {opts.seed} with "
                                 f"these options has {len(plan)} fault(s) (0..{len(plan) - 1})")
            # those faults alone, at once; faults of one wave still fire together
            plan = [Fault(**{**plan[k].as_dict(), "at_s": 0.0}) for k in sorted(set(opts.replay))]
        self.plan = plan
        if opts.clients < 0:
            raise ValueError(f"--clients must be >= 0, got {opts.clients}")
        # the workload's files (a disk image) and the instance's cwd; removed by run()
        self.tmpdir = tempfile.mkdtemp(prefix="redleaf-crashtest-")
        try:
            self.workload = workloads.get(opts.workload, self.tmpdir)
            if opts.name and not self.workload.joinable:
                raise ValueError(f"workload {opts.workload!r} {self.workload.joinable_why}; "
                                 f"run it without --name (it boots an instance of its own)")
        except BaseException:
            if getattr(self, "workload", None) is not None:
                self.workload.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        # the extra clients are targets unless --targets says otherwise
        self.targets = opts.targets or (self.workload.targets + (",client-*" if opts.clients else ""))
        self.pool = None
        #: (fault, domain id, wave) of extra clients a fault ended, not yet checked and replaced
        self._gone_clients: list = []
        self.rec = CampaignRecord(options=_opts_dict(opts, self.targets), plan_size=len(plan))
        self._conts: list[threading.Timer] = []
        self._log_paths: dict[str, str] = {}  # domain -> its log file (stable across restarts)

    # ---------------------------------------------------------------------------------- run
    def run(self) -> CampaignRecord:
        from redleaf.supervisor.instance import Instance

        self.inst = None
        try:
            if self.opts.name:
                name = self.opts.name
            else:
                manifest = self.workload.manifest()
                if manifest is not None and self.opts.clients:
                    manifest = _with_echo(manifest)
                if manifest is None:
                    raise ValueError(f"workload {self.opts.workload!r} boots no instance of its own: "
                                     f"give --name of a running one")
                self.inst = Instance(manifest, cwd=self.tmpdir).start(timeout=60.0)
                name = self.inst.name
                self.rec.booted = True
            self.rec.instance = name
            self._run_on(name)
        finally:
            for t in self._conts:  # nothing stays stopped after the campaign (a joined instance lives on)
                if t.is_alive():
                    t.cancel()
                    _cont(*t.args)
            if self.pool is not None:
                self.pool.end()  # whatever happened: no client outlives the campaign
            self.workload.close()
            inst = self.inst  # the last incarnation: a `supervisor` fault starts a new one
            if inst is not None:
                inst.stop()
                for p in inv.leftover_problems(inst.leftovers()):
                    self._violate(None, "-", "-", p)
                inst.cleanup_log()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            import gc

            gc.collect()  # the workload's attach (heap and channel mappings) goes now, not later
        return self.rec

    def _run_on(self, name: str) -> None:
        from redleaf.domains.control import ControlClient

        self.ctl = ControlClient(name, timeout_s=30.0)
        try:
            self.t0 = time.monotonic()
            self.rec.started_wall = time.time()
            wl = self.workload
            rec = self.wrec = wl.start(name)
            if not rec.started.wait(60.0) or rec.crashed:
                self._violate(None, "-", "-", f"the workload never completed a call"
                              + (f": {rec.crashed}" if rec.crashed else ""))
                return
            self.errors_seen = 0
            if self.opts.clients:
                from .clients import ClientError, ClientPool

                self.pool = ClientPool(name, CLIENT_ECHO, self.tmpdir)
                try:
                    self.pool.start(self.opts.clients)
                except ClientError as e:
                    self._violate(None, "-", "-", str(e))
                    wl.stop(timeout=1.0)
                    return
            try:
                self._check(None, [], [])  # the instance is sound before the first fault
                self.progress("start", plan=len(self.plan), instance=name)
                for wave in waves(self.plan):
                    delay = self.t0 + wave[0].at_s - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # the schedule's clock, not a synchronisation
                    self._wave(wave)
                    if rec.crashed:
                        break
            except _Abort:
                wl.stop(timeout=1.0)
                return
            ended = wl.stop(timeout=wl.deadline_s + GRACE_S)
            if not ended:
                self._violate(None, "-", "-", f"the workload's loop did not stop: "
                              f"{rec.hung_call(time.monotonic(), 0) or 'a call never returned'}")
            self._classify_errors(None, set(), [])
            self._check(None, [], [])
            for p in wl.final_problems():
                self._violate(None, "-", "-", p)
        finally:
            self.rec.elapsed_s = time.monotonic() - self.t0
            w = getattr(self, "wrec", None)
            if w is not None:
                self.rec.ops, self.rec.buckets = w.ops, dict(w.buckets)
                self.rec.workload_stats = self.workload.stats()
                if w.crashed:
                    self._violate(None, "-", "-", f"the workload's loop died: {w.crashed}")
            self.ctl.close()

    # ---------------------------------------------------------------------------------- a wave
    def _wave(self, wave: list[Fault]) -> None:
        if any(f.kind in INSTANCE_KINDS for f in wave):
            self._supervisor_wave(wave)
            return
        rows = self._status()
        targets = inv.matching_targets(rows, self.targets, self._client_names())
        names = resolve_targets(wave, targets)
        by_name = {r["name"]: r for r in rows}
        results = []
        for f, target in zip(wave, names or [None] * len(wave)):
            res = FaultResult(f.index, f.wave, f.kind, target or "-")
            if target is None:
                res.how = f"skipped: no running target matches {self.targets!r}"
                res.fired_at = time.monotonic() - self.t0
            results.append(res)
            self.rec.faults.append(res)
        self._fire_wave([(f, r, by_name.get(r.target)) for f, r in zip(wave, results) if r.target != "-"])
        hit = {r.target for r in results if not r.how.startswith("skipped")}
        # an incarnation is (pid, restarts): a co-located domain restarts in its group's
        # process, under the same pid
        old = {r.target: _incarnation(by_name[r.target]) for r in results if r.target in by_name}
        clients = {t for t in hit if by_name[t]["kind"] == "client"}
        ids = {t: by_name[t]["id"] for t in clients}
        self._await_recovery(results, old, ids)
        self._wave_problems = inv.bystander_problems(rows, self._settled_status(), hit, clients) if clients else []
        self._check(wave, results, names, hit)
        self.progress("wave", wave=wave, results=results, violations=len(self.rec.violations),
                      ops=self.wrec.ops)

    # ---------------------------------------------------------------------------------- the supervisor
    def _supervisor_wave(self, wave: list[Fault]) -> None:
        """kill -9 of the supervisor, then `up` of the same instance (name, manifest,
        directory): the stale instance must be cleaned by that `up` and the workload
        resume on the new one.  The wave's other faults are not fired: the whole
        instance goes, they would hit nothing that lives on."""
        f = next(f for f in wave if f.kind in INSTANCE_KINDS)
        results = []
        for g in wave:
            res = FaultResult(g.index, g.wave, g.kind, "supervisor" if g is f else "-")
            if g is not f:
                res.how = "skipped: the supervisor is killed in the same wave"
            results.append(res)
            self.rec.faults.append(res)
        res = results[wave.index(f)]
        hit: set[str] = set()
        if self.inst is None:
            res.how = "skipped: only the supervisor of an instance the campaign booted is killed (no --name)"
            res.fired_at = time.monotonic() - self.t0
        else:
            hit = {"supervisor"}
            problems = self._kill_and_restart(res)
            for p in problems:
                self._violate(res.index, res.kind, "supervisor", p, tuple(g.index for g in wave))
        for r in results:
            if r is not res:
                r.fired_at = res.fired_at
        self._check(wave, results, [r.target for r in results if r.target != "-"], hit)
        self.progress("wave", wave=wave, results=results, violations=len(self.rec.violations), ops=self.wrec.ops)

    def _kill_and_restart(self, res: FaultResult) -> list[str]:
        import psutil

        from redleaf.domains.control import ControlClient
        from redleaf.supervisor.instance import Instance

        old = self.inst
        st = self.ctl.request("status")
        sup = st["pid"]
        procs = {sup: "supervisor"}
        try:
            procs.update({p.pid: "a process of the supervisor" for p in psutil.Process(sup).children(recursive=True)})
        except psutil.Error:
            pass
        procs.update({r["pid"]: r["name"] for r in st["domains"] if r.get("pid") and r["kind"] != "client"})
        ctimes = {pid: _ctime(pid) for pid in procs}
        # the heap file (tmpfs: a new file is a new inode), and a marker in the runtime
        # directory: its sockets, token, doorbells and records go with the directory, and
        # an inode number there may be reused at once by the new instance's files
        marker = old.paths.root / f"crashtest-marker-{os.getpid()}-{res.index}"
        marker.touch(mode=0o600)
        files = {str(old.paths.heap): _inode(old.paths.heap), str(marker): _inode(marker)}
        files = {k: v for k, v in files.items() if v is not None}
        self.workload.begin_outage()
        if self.pool is not None:
            self.pool.end()  # attached to the instance that dies: new ones join the next
        os.kill(sup, signal.SIGKILL)
        res.how = f"kill -9 of the supervisor (pid {sup}), then `up` again"
        res.fired_at = time.monotonic() - self.t0
        problems = []
        try:
            old.proc.wait(RECOVER_S)
        except Exception:
            problems.append(f"the supervisor (pid {sup}) did not die of SIGKILL within {RECOVER_S:g}s")
        if not self.workload.leave(self.workload.deadline_s + GRACE_S):
            problems.append(f"the workload's loop did not leave the dead instance: "
                            f"{self.wrec.hung_call(time.monotonic(), 0) or 'a call never returned'}")
        ops0 = self.wrec.ops  # what it completes from now on, it completes on the new instance
        self.ctl.close()
        # the next `up`: the same name, manifest and directory, as a user would type it
        new = Instance(old.manifest_text, name=old.name, env=old.env, cwd=old.cwd)
        try:
            self.inst = new.start(timeout=60.0)
        except Exception as e:
            self.inst = new  # stopped and cleaned by run()'s end (self.ctl stays the closed one)
            why = f"`up` after the supervisor's kill failed: {e}"
            self._violate(res.index, res.kind, "supervisor", why, (res.index,))
            raise _Abort(why) from None
        finally:
            _forget(old)
        self.ctl = ControlClient(new.name, timeout_s=30.0)
        survivors = [pid for pid, ct in ctimes.items() if ct is not None and _ctime(pid) == ct]
        now = {path: _inode(path) for path in files}
        problems += inv.stale_problems(procs, survivors, files, now)
        self.workload.end_outage()
        if self.pool is not None:
            from .clients import ClientError, ClientPool

            n = self.opts.clients
            self.pool = ClientPool(new.name, CLIENT_ECHO, self.tmpdir)
            try:
                self.pool.start(n)
            except ClientError as e:
                problems.append(f"the extra clients did not come back: {e}")
        deadline = time.monotonic() + RECOVER_S
        while self.wrec.ops == ops0 and time.monotonic() < deadline and not self.wrec.crashed:
            time.sleep(POLL_S)
        if self.wrec.ops == ops0:
            problems.append(f"the workload did not complete a call within {RECOVER_S:g}s of the new `up`"
                            + (f": {self.wrec.crashed}" if self.wrec.crashed else ""))
        else:
            res.restarted = True
            res.recovered_s = round(time.monotonic() - (self.t0 + res.fired_at), 6)
        return problems

    def _fire_wave(self, todo: list) -> None:
        """Deliver the faults of a wave, (fault, result, status row) each, in one
        instant: every control request is sent before any reply is awaited.  Each
        result's `how` says what was done; `fired_at` is when it was delivered."""
        first: dict[int, tuple] = {}  # rid -> (fault, result, row, request)
        for f, res, row in todo:
            req = self._request_for(f, res, row)
            if req is None:
                res.fired_at = time.monotonic() - self.t0
                continue
            try:
                first[self.ctl.submit(req[0], **req[1])] = (f, res, row, req)
            except ControlError as e:
                res.how = f"skipped: {e}"
        retry: dict[int, tuple] = {}
        for rid, reply in self._collect(first).items():
            f, res, row, (cmd, fields) = first[rid]
            if isinstance(reply, ControlError) and cmd == "inject" and f.kind != "slow":
                # not armed (e.g. the domain is busy): the signal of the same name instead
                res.fire_log = None
                fields = {"name": res.target, "how": f.kind}
                retry[self.ctl.submit("kill", **fields)] = (f, res, row, ("kill", fields))
                continue
            self._record_fired(f, res, cmd, fields, reply)
        for rid, reply in self._collect(retry).items():
            f, res, _row, (cmd, fields) = retry[rid]
            self._record_fired(f, res, cmd, fields, reply)

    def _collect(self, sent: dict) -> dict:
        return self.ctl.collect(list(sent), 30.0, "a fault") if sent else {}

    def _record_fired(self, f: Fault, res: FaultResult, cmd: str, fields: dict, reply) -> None:
        res.fired_at = time.monotonic() - self.t0
        if isinstance(reply, ControlError):
            res.fire_log = None
            res.how = f"skipped: {'inject refused: ' if cmd == 'inject' else ''}{reply}"
        elif cmd == "inject":
            extra = f" ({self.opts.stall_s:g}s)" if f.kind == "slow" else ""
            res.how = f"inject {f.kind}{extra} at call {f.nth} of {self._method(f, res)}"
        else:
            how = fields["how"]
            res.how = f"kill --how {how}" + (f" (for {f.kind}: an attached client)" if how != f.kind else "")

    def _method(self, f: Fault, res: FaultResult) -> str:
        methods = self.workload.methods_for(res.target)
        return methods[f.method_pick % len(methods)]

    def _request_for(self, f: Fault, res: FaultResult, row: dict):
        """The control request that delivers `f` at `res.target`, as (cmd, fields); or
        None when it was delivered here (a SIGSTOP) or cannot be (`res.how` says)."""
        kind, target = f.kind, res.target
        if row["kind"] == "client" and kind not in ("sigkill", "sigsegv", "stop", "slow"):
            # a client process has no calls to arm and no handlers for the domain's
            # fault signals: the kinds that end a domain end it with SIGKILL
            kind = "sigkill"
        if kind in IN_CALL_KINDS and row["kind"] == "domain" and self.workload.methods_for(target):
            # an armed fault fires when the workload's call reaches it, or never: the
            # target's own log line (FaultArm.fire writes it first) says which
            path = self._log_paths.get(target)
            if path is None:
                try:
                    path = self._log_paths[target] = self.ctl.request("logs", name=target)["path"]
                except ControlError as e:
                    res.how = f"skipped: {e}"
                    return None
            res.fire_log = (path, _size(path))
            return "inject", {"name": target, "method": self._method(f, res), "nth": f.nth, "action": kind,
                              "stall_s": float(self.opts.stall_s)}
        if kind in ("sigkill", "sigsegv", "exception", "exit", "hang"):
            return "kill", {"name": target, "how": kind}
        # stop, and slow at a target the workload does not call: the process stands still
        hold = f.hold_s if kind == "stop" else float(self.opts.stall_s)
        try:
            os.kill(row["pid"], signal.SIGSTOP)
        except ProcessLookupError:
            res.how = "skipped: the target's process was gone"
            return None
        t = threading.Timer(hold, _cont, args=(row["pid"],))
        t.daemon = True
        t.start()
        self._conts.append(t)
        res.held_s = hold
        res.how = f"SIGSTOP, SIGCONT after {hold:g}s"
        return None

    def _await_recovery(self, results: list[FaultResult], old: dict, client_ids: dict | None = None) -> None:
        """Until everything settled and each target is running again: a new pid for a
        fault that ends the process, or the same one once a stop or stall is over (the
        watchdog may have replaced it meanwhile).  An armed in-call fault that the
        workload's calls did not reach within FIRE_S is recorded as not fired."""
        t_start = time.monotonic()
        pending = {r.index: r for r in results if not r.how.startswith("skipped")}
        deadline = t_start + RECOVER_S
        last_rows = []
        while pending and time.monotonic() < deadline:
            rows = self._status()
            last_rows = rows
            now = time.monotonic()
            by = {r["name"]: r for r in rows}
            ok = inv.settled(rows)
            for idx, res in list(pending.items()):
                row = by.get(res.target)
                if client_ids and res.target in client_ids and not res.held_s:
                    # an extra client the fault ended: back once the supervisor dropped it
                    # (reclaimed) and a replacement attached
                    if row is not None:
                        continue
                    self._gone_clients.append((res, client_ids[res.target], tuple(r.index for r in results)))
                    res.restarted = True
                    res.recovered_s = round(time.monotonic() - (self.t0 + res.fired_at), 6)
                    del pending[idx]
                    continue
                if row is None:
                    continue
                new_pid = _incarnation(row) != old.get(res.target)
                waited = now - t_start
                if ok and row["state"] == "running" and new_pid:
                    res.restarted = True
                elif ok and row["state"] == "running" and res.held_s and waited > res.held_s:
                    pass  # stopped and continued: the same process, back
                elif res.kind == "slow" and res.fire_log is not None and self._fired(res, now) and \
                        now - res.fired_in_call_at > self.opts.stall_s and ok and row["state"] == "running":
                    pass  # the stall is over: the same process, serving
                elif ok and row["state"] == "running" and res.fire_log is not None and waited > FIRE_S and \
                        not self._fired(res, now):
                    res.how += " (not fired: the workload did not make that call in time)"
                elif ok and row["state"] == "failed":
                    pass  # the restart policy gave up: a verdict, checked below
                else:
                    continue
                res.recovered_s = round(now - (self.t0 + res.fired_at), 6)
                del pending[idx]
            if pending:
                time.sleep(POLL_S)
        for res in pending.values():
            row = next((r for r in last_rows if r["name"] == res.target), {})
            self._violate(res.index, res.kind, res.target,
                          f"{res.target} did not come back within {RECOVER_S:g}s of the fault "
                          f"(state {row.get('state', '?')})", tuple(r.index for r in results))

    def _replace_gone_clients(self) -> None:
        """After the check that looked for their leftovers: a new client for each
        extra client a fault ended (it may get the dead one's id: hence not before)."""
        from .clients import ClientError

        gone, self._gone_clients = self._gone_clients, []
        for res, _did, wave in gone:
            try:
                new = self.pool.replace(res.target)
                res.how += f"; replaced by {new}"
            except ClientError as e:
                self._violate(res.index, res.kind, res.target, f"no replacement for {res.target}: {e}", wave)

    def _client_names(self) -> set[str]:
        return self.pool.names() if self.pool is not None else set()

    def _fired(self, res: FaultResult, now: float) -> bool:
        if res.fired_in_call_at is None:
            path, off = res.fire_log
            try:
                with open(path, "rb") as fh:
                    fh.seek(off)
                    if f"injected fault: {res.kind} ".encode() in fh.read():
                        res.fired_in_call_at = now
            except OSError:
                pass
        return res.fired_in_call_at is not None

    # ---------------------------------------------------------------------------------- checks
    def _classify_errors(self, wave, hit: set[str], results: list[FaultResult]) -> None:
        """The workload's errors since the last look: expected or not, given what the
        wave hit.  Unexpected ones are one violation per error type and wave."""
        errs = self.wrec.errors[self.errors_seen:]
        self.errors_seen += len(errs)
        unexpected: dict[str, list] = {}
        for t, kind, msg, what in errs:
            # while the supervisor is killed and started again every call may fail
            expected = "supervisor" in hit or self.workload.expected(kind, hit, what)
            key = f"{kind} ({'expected' if expected else 'unexpected'})"
            self.rec.errors_by_kind[key] = self.rec.errors_by_kind.get(key, 0) + 1
            if results:  # a wave's errors are counted on its first fault
                if expected:
                    results[0].errors_expected += 1
                else:
                    results[0].errors_unexpected += 1
            if not expected:
                if len(self.rec.unexpected_errors) < 50:
                    self.rec.unexpected_errors.append((round(t - self.t0, 6), kind, msg))
                unexpected.setdefault(kind, []).append(msg)
        for kind, msgs in unexpected.items():
            self._violate_wave(wave, ",".join(sorted(hit)) or "-",
                               f"the workload saw {len(msgs)} unexpected {kind}" + ("" if len(msgs) == 1 else "s")
                          + f" (first: {msgs[0]})")

    def _check(self, wave, results, names, hit: set | None = None) -> None:
        tgt = ",".join(names) if names else "-"
        gone = self.ctl.supervisor_gone()
        if gone:
            self._violate_wave(wave, tgt, f"supervisor not alive: {gone}")
            raise _Abort(gone)
        w = self.wrec
        parked = self.workload.pause(self.workload.deadline_s + GRACE_S)
        late = self.pool.park() if self.pool is not None else []
        try:
            problems = [] if parked else [w.hung_call(time.monotonic(), 0) or "the workload's loop did not pause"]
            problems += [f"{n} did not park within its next round: a hung caller" for n in late]
            if hit is not None:
                # once parked, so an error of a round the wave cut into (a frame the
                # fault dropped, known only when the round ends) counts with this wave
                self._classify_errors(wave, hit, results)
            self._check_paused(results, problems)
        finally:
            if self.pool is not None:
                self.pool.resume()
            self.workload.resume()
        if self._gone_clients:
            self._replace_gone_clients()
        for p in dict.fromkeys(problems):
            self._violate_wave(wave, tgt, p)
        if self._failed:
            raise _Abort("an entry is failed: the instance cannot recover from here")

    def _check_paused(self, results, problems: list) -> None:
        rows = self._settled_status()
        failed = inv.failed_entries(rows)
        self._failed = bool(failed)
        problems += failed
        gone = {res.target for res, _did, _w in self._gone_clients}
        for r in results:
            problems += inv.recovery_problems(rows, r.target) if r.target not in ("-", "supervisor", *gone) else []
        try:
            heap = self.ctl.request("heap", check=True)
            problems += inv.heap_problems(heap, rows)
            problems += inv.channel_problems(heap, rows)
            problems += inv.mapping_problems(_mapped_segments(rows), rows, heap)
            for res, did, _w in self._gone_clients:
                problems += inv.dead_client_problems(res.target, did, heap, rows)
        except ControlError as e:
            problems.append(f"heap --check failed: {e}")
        w = self.wrec
        problems += [p for _t, p in w.problems[getattr(self, "_problems_seen", 0):]]
        self._problems_seen = len(w.problems)
        problems += inv.deadline_problems(w.slow_calls[getattr(self, "_slow_seen", 0):], GRACE_S)
        self._slow_seen = len(w.slow_calls)
        problems += getattr(self, "_wave_problems", [])
        self._wave_problems = []
        if self.pool is not None:
            problems += self.pool.take_problems()

    def _status(self) -> list[dict]:
        return self.ctl.request("status")["domains"]

    def _settled_status(self) -> list[dict]:
        deadline = time.monotonic() + RECOVER_S
        rows = self._status()
        while not inv.settled(rows) and time.monotonic() < deadline:
            time.sleep(POLL_S)
            rows = self._status()
        return rows

    def _violate_wave(self, wave, target: str, what: str) -> None:
        if not wave:
            self._violate(None, "-", target, what)
        else:
            self._violate(wave[0].index, "+".join(f.kind for f in wave), target, what,
                          tuple(f.index for f in wave))

    def _violate(self, fault: int | None, kind: str, target: str, what: str, wave: tuple = ()) -> None:
        v = Violation(self.opts.seed, fault, kind, target, what, wave)
        self.rec.violations.append(v)
        self.progress("violation", violation=v)


class _Abort(Exception):
    """The supervisor is gone: the campaign cannot go on (recorded as a violation)."""


def _mapped_segments(rows: list[dict]) -> dict[int, int]:
    """pid -> distinct channel segments (memfds "redleaf-chan-<tag>") it maps, for
    every live process of the table (this one too: the workload's client)."""
    out = {}
    # (this process too: a channel closed here, or by an earlier campaign's attach in the
    # same process, is unmapped at once, whatever views of it an exception's frames keep;
    # see Runtime.close_channel.  No collection is needed, which with a long campaign's
    # growing records would cost more at every wave.)
    pids = {r["pid"] for r in rows if r.get("pid") and r["state"] == "running"}
    for pid in pids:
        tags = set()
        try:
            with open(f"/proc/{pid}/maps") as fh:
                for line in fh:
                    i = line.find("/memfd:redleaf-chan-")
                    if i >= 0:
                        tags.add(line[i:].split(" ")[0].strip())
        except OSError:
            continue  # gone meanwhile: the next check sees its death
        out[pid] = len(tags)
    return out


def _incarnation(row: dict) -> tuple:
    return row.get("pid"), row.get("restarts", 0)


def _ctime(pid: int) -> float | None:
    """The start time of a live (not zombie) process, None if there is none."""
    import psutil

    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else p.create_time()
    except psutil.Error:
        return None


def _inode(path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def _forget(inst) -> None:
    """An incarnation whose supervisor was killed: its files in this process (the
    manifest copy, the log) go; its instance's leftovers are the next `up`'s to clean."""
    if inst.manifest_path:
        try:
            os.unlink(inst.manifest_path)
        except FileNotFoundError:
            pass
    try:
        inst._log.close()
    except Exception:
        pass
    inst.cleanup_log()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass  # killed meanwhile (the watchdog took it for hung)


#: what the extra clients call: the instance's Echo domain (added to a workload's
#: manifest that has none)
CLIENT_ECHO = "echo"
_ECHO_ENTRY = """
[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.005
backoff_max_s = 0.05
"""


def _with_echo(manifest: str) -> str:
    """The workload's manifest, with an Echo domain for the extra clients if it has none."""
    import tomllib

    names = {d.get("name") for d in tomllib.loads(manifest).get("domain", [])}
    return manifest if CLIENT_ECHO in names else manifest + _ECHO_ENTRY


def _all_kinds():
    from .schedule import FAULT_KINDS

    return FAULT_KINDS


def _opts_dict(o: Options, targets: str) -> dict:
    return {"workload": o.workload, "name": o.name, "targets": targets, "faults": list(o.kinds or _all_kinds()),
            "schedule": o.schedule, "rate": o.rate, "count": o.count, "duration": o.duration, "seed": o.seed,
            "replay": list(o.replay) if o.replay is not None else None, "stall_s": o.stall_s,
            "clients": o.clients}
