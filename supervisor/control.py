"""Control dispatch: one table from command name to handler, and the handlers.

Owns: authentication of requests (the instance token), the command table, and the
translation of each request into calls on the concepts below it.  Calls the table,
lifecycle, channels, devices, the heap and the endpoints.  Handlers return a reply
at once, or None when the reply comes later (a load, unload or restart is answered
by lifecycle when the domain runs, stops or fails); no handler waits.

The table is checked when the supervisor starts (`check_table`): every command the
control protocol defines (domains.control.COMMANDS) has a handler, and every
handler method is in the table, so a command cannot be added on one side only.
"""

from __future__ import annotations

import hmac
import logging
import os
import signal
import struct
import time
import traceback

import psutil

from redleaf.domains.control import COMMANDS, ProtocolError, decode_request
from redleaf.domains.doorbell import RA_CALLS_MADE, RA_CALLS_SERVED
from redleaf.domains.host import SIG_HANG

from .manifest import ManifestError, domain_spec
from .table import RUNNING, Entry, Refusal

KILL_SIGNALS = {
    "sigkill": signal.SIGKILL,
    "sigsegv": signal.SIGSEGV,
    "exception": signal.SIGUSR1,
    "exit": signal.SIGUSR2,
    "hang": SIG_HANG,
}
_U64 = struct.Struct("<Q")

log = logging.getLogger("redleaf.supervisor")


class DispatchTableError(RuntimeError):
    """The command table and the control protocol disagree (a bug in the supervisor)."""


def check_table(handlers: dict, owner) -> None:
    """Every protocol command has a handler; every `cmd_*` method of owner is in the table."""
    missing = sorted(set(COMMANDS) - set(handlers))
    unknown = sorted(set(handlers) - set(COMMANDS))
    methods = {n for n in dir(type(owner)) if n.startswith("cmd_")}
    listed = {getattr(fn, "__name__", "") for fn in handlers.values()}
    unlisted = sorted(methods - listed)
    problems = []
    if missing:
        problems.append(f"no handler for command(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"handler(s) for command(s) the protocol does not define: {', '.join(unknown)}")
    if unlisted:
        problems.append(f"handler method(s) not in the command table: {', '.join(unlisted)}")
    if problems:
        raise DispatchTableError("control dispatch table: " + "; ".join(problems) +
                                 " (add it to Control.handlers and to domains.control.COMMANDS)")


class Control:
    def __init__(self, sup, table, lifecycle, channels, devices, heap, loop, out):
        self.sup = sup
        self.table = table
        self.life = lifecycle
        self.channels = channels
        self.devices = devices
        self.heap = heap
        self.loop = loop
        self.out = out
        self.handlers = {
            "ping": self.cmd_ping,
            "status": self.cmd_status,
            "hello": self.cmd_hello,
            "ready": self.cmd_ready,
            "init_failed": self.cmd_init_failed,
            "attach": self.cmd_attach,
            "detach": self.cmd_detach,
            "load": self.cmd_load,
            "unload": self.cmd_unload,
            "restart": self.cmd_restart,
            "kill": self.cmd_kill,
            "lookup": self.cmd_lookup,
            "close_channel": self.cmd_close_channel,
            "lease": self.cmd_lease,
            "register_type": self.cmd_register_type,
            "report_hang": self.cmd_report_hang,
            "bind_device": self.cmd_bind_device,
            "heap": self.cmd_heap,
            "logs": self.cmd_logs,
            "shutdown": self.cmd_shutdown,
        }
        check_table(self.handlers, self)

    # ------------------------------------------------------------------ dispatch
    def drain(self) -> None:
        for ident, envelope, frame in self.out.requests():
            reply = self.handle(ident, frame)
            if reply is not None:
                self.out.send(ident, reply, envelope)

    def handle(self, ident: bytes, frame: bytes) -> dict | None:
        rid = None
        try:
            msg = decode_request(frame)
            rid = msg.get("rid")
            tok = msg.get("token")
            if not isinstance(tok, bytes) or not hmac.compare_digest(tok, self.sup.token):
                raise Refusal("AuthError", "missing or wrong instance token")
            msg["rid"] = rid if isinstance(rid, int) else None
            out = self.handlers[msg["cmd"]](ident, msg)
            if out is None:  # answered later
                return None
            out.setdefault("ok", True)
        except ProtocolError as e:
            out = {"ok": False, "kind": "ProtocolError", "error": str(e)}
        except ManifestError as e:
            out = {"ok": False, "kind": "BadRequest", "error": str(e)}
        except Refusal as e:
            out = {"ok": False, "kind": e.kind, "error": str(e)}
        except Exception as e:  # a bug here must not take the supervisor down
            log.error("control handler failed: %s\n%s", e, traceback.format_exc())
            out = {"ok": False, "kind": "InternalError", "error": f"{type(e).__name__}: {e}"}
        out["rid"] = rid if isinstance(rid, int) else None
        return out

    def _entry(self, name: str) -> Entry:
        e = self.table.entries.get(name)
        if e is None:
            raise Refusal("NotFound", f"no domain named {name!r} (see `redleaf status`)")
        return e

    def _caller(self, msg: dict) -> Entry:
        e = self.table.by_id.get(msg["domain_id"])
        if e is None or e.dying:
            raise Refusal("NotFound", f"unknown domain id {msg['domain_id']}")
        return e

    # ------------------------------------------------------------------ domains' own requests
    def cmd_ping(self, ident, msg):
        return {"instance": self.sup.name, "pid": os.getpid()}

    def cmd_hello(self, ident, msg):
        e = self._caller(msg)
        if e.pid == 0 and e.spawn_req:
            # the child spoke before the zygote's "spawned" report reached us: the
            # pid it claims is checked, and answered, when that report arrives
            e.hello = (ident, msg["rid"], msg["pid"])
            return None
        if e.pid != msg["pid"]:
            raise Refusal("AuthError", f"domain id {e.id} belongs to pid {e.pid}, not {msg['pid']}")
        e.ident = ident
        return {}

    def cmd_ready(self, ident, msg):
        e = self._caller(msg)
        exports = []
        for x in msg["exports"]:
            if not (isinstance(x, dict) and all(isinstance(x.get(k), str) for k in ("name", "interface", "fingerprint"))):
                raise Refusal("BadRequest", "exports must be maps with name, interface and fingerprint")
            owner = self.table.export_owner(x["name"], x["interface"])
            if owner is not None and owner is not e:
                raise Refusal("Conflict", f"{x['name']!r} ({x['interface']}) is already exported by {owner.name!r}")
            exports.append(x)
        if e.kind == "device":
            e.device = self.devices.check_ready(msg.get("device"))
        e.exports = exports
        e.ident = ident
        self.life.ready(e)
        return {}

    def cmd_init_failed(self, ident, msg):
        e = self._caller(msg)
        e.init_error = msg["error"].splitlines()[0] if msg["error"] else "constructor failed"
        log.warning("domain %s failed to initialise: %s", e.name, msg["error"])
        return {}

    def cmd_attach(self, ident, msg):
        pid = msg["pid"]
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise Refusal("BadRequest", f"no process {pid} to attach") from None
        name = f"client-{pid}"
        if name in self.table.entries:
            os.close(pidfd)
            raise Refusal("Conflict", f"process {pid} is already attached as domain {self.table.entries[name].id}; "
                                      f"a process is one domain: reuse its client, or close() it first")
        e = Entry(name=name, kind="client", spec=None, tracker=None)
        try:
            self.table.assign_id(e)
        except Refusal:
            os.close(pidfd)
            raise
        e.pid = pid
        e.pidfd = pidfd
        e.ident = ident
        e.started_at = e.ready_at = time.monotonic()
        self.table.entries[e.name] = e
        self.table.by_pid[pid] = e
        self.heap.register_domain(e.id)
        from redleaf.domains.doorbell import make_bell

        make_bell(self.sup.paths.bell(e.id))
        self.loop.add_reader(pidfd, lambda: self.life.on_client_gone(e))
        self.life.set_state(e, RUNNING, "attached")
        return {"domain_id": e.id, "heap": str(self.sup.paths.heap)}

    def cmd_detach(self, ident, msg):
        e = self._caller(msg)
        if e.kind != "client":
            raise Refusal("BadRequest", "only attached clients detach")
        e.stop_requested = True
        self.life.begin_death(e, 0, "detached")
        return {}

    def cmd_lookup(self, ident, msg):
        caller = self._caller(msg)
        owner, exp = None, None
        for e in self.table.entries.values():
            for x in e.exports:
                if x["name"] == msg["name"] and (exp is None or x["interface"] == msg["interface"]):
                    owner, exp = e, x
        if owner is None:
            named = self.table.entries.get(msg["name"])
            if named is not None:
                raise Refusal("DomainUnavailable", f"{named.name} is {named.state}")
            raise Refusal("NotFound", f"nothing exports {msg['name']!r}")
        if owner.state != RUNNING:
            raise Refusal("DomainUnavailable", f"{owner.name} is {owner.state}")
        if exp["interface"] != msg["interface"]:
            raise Refusal("InterfaceMismatch", f"{msg['name']!r} implements {exp['interface']}, not {msg['interface']}")
        if exp["fingerprint"] != msg["fingerprint"]:
            raise Refusal("InterfaceMismatch",
                          f"{msg['name']!r}: caller and callee disagree on {exp['interface']}'s methods "
                          f"(fingerprints {msg['fingerprint']} vs {exp['fingerprint']}); load the same code on both sides")
        rec = self.channels.open(caller, owner)
        self.out.send(owner.ident, {"push": "channel_open", "channel": rec.id, "offset": rec.offset,
                                    "size": rec.size, "caller": caller.id, "export": exp["name"],
                                    "interface": exp["interface"]})
        self.channels.ring(owner.id)
        return {"channel": rec.id, "offset": rec.offset, "size": rec.size, "callee": owner.id}

    def cmd_close_channel(self, ident, msg):
        e = self._caller(msg)
        rec = self.channels.channels.get(msg["channel"])
        if rec is not None and e.id in (rec.caller, rec.callee):
            self.channels.drop_end(rec, e.id)
        return {}

    def cmd_lease(self, ident, msg):
        e = self._caller(msg)
        if msg["count"] <= 0 or msg["count"] > 1 << 16:
            raise Refusal("BadRequest", "lease count must be between 1 and 65536")
        from redleaf.shared_heap import HeapError

        try:
            items = self.heap.lease(e.id, msg["kind"], msg["count"])
        except HeapError as ex:
            raise Refusal(type(ex).__name__, str(ex)) from None
        except ValueError as ex:
            raise Refusal("BadRequest", str(ex)) from None
        return {"items": list(items)}

    def cmd_register_type(self, ident, msg):
        self._caller(msg)
        self.heap.register_type(msg["type_id"], msg["type_name"], msg["descr"])
        return {}

    def cmd_report_hang(self, ident, msg):
        self._caller(msg)
        e = self.table.by_id.get(msg["callee"])
        if e is not None and e.alive:
            self.life.kill_hung(e, f"reported hung by domain {msg['domain_id']} (call deadline passed)")
        return {}

    def cmd_bind_device(self, ident, msg):
        drv = self._caller(msg)
        dev = self.table.entries.get(msg["device"])
        if dev is None or dev.kind != "device":
            raise Refusal("NotFound", f"no device named {msg['device']!r} (devices are [[device]] entries in the manifest)")
        return self.devices.bind(drv, dev)

    # ------------------------------------------------------------------ operators' requests
    def cmd_status(self, ident, msg):
        stats = self._heap_stats_by_domain()
        rows = [self._status_row(e, stats) for e in self.table.entries.values()]
        return {"instance": self.sup.name, "domains": rows, "pid": os.getpid()}

    def _status_row(self, e: Entry, stats: dict) -> dict:
        cpu = rss = None
        if e.alive and e.pid:
            try:
                p = e.psutil_proc if e.psutil_proc is not None and e.psutil_proc.pid == e.pid else psutil.Process(e.pid)
                e.psutil_proc = p
                t = p.cpu_times()
                cpu = round(t.user + t.system, 3)
                rss = p.memory_info().rss
            except psutil.Error:
                pass
        served = made = 0
        if e.alive and e.id:
            area = self.heap.runtime_area(e.id)
            served = _U64.unpack_from(area, RA_CALLS_SERVED)[0]
            made = _U64.unpack_from(area, RA_CALLS_MADE)[0]
        hs = stats.get(e.id, {}) if e.alive else {}
        return {"name": e.name, "kind": e.kind, "id": e.id, "pid": e.pid or None, "state": e.state,
                "restarts": e.restarts, "uptime_s": round(e.uptime(), 3), "cpu_s": cpu, "rss": rss,
                "heap_bytes": hs.get("bytes", 0), "heap_objects": hs.get("objects", 0),
                "calls_served": served, "calls_made": made, "reason": e.reason,
                "target": e.spec.target if e.spec else None,
                "image": e.spec.config.get("image") if e.kind == "device" and e.spec else None,
                "group": e.spec.group if e.spec else None,
                "exports": [_export_row(x) for x in e.exports]}

    def _heap_stats_by_domain(self) -> dict:
        try:
            st = self.heap.stats()
        except Exception as ex:  # stats are informational; never fail status over them
            log.warning("heap stats failed: %s", ex)
            return {}
        return {int(did): {"bytes": d.get("bytes", 0), "objects": d.get("objects", 0)}
                for did, d in st.get("domains", {}).items()}

    def cmd_load(self, ident, msg):
        raw = {"name": msg["name"], "target": msg["target"], "restart": msg["restart"],
               "config": msg["config"], "uses": msg["uses"], "shadow": msg["shadow"]}
        for k in ("max_restarts", "period_s", "backoff_s", "watchdog_s"):
            if k in msg:
                raw[k] = msg[k]
        path = msg.get("path")
        if path is not None and not (isinstance(path, str) and os.path.isabs(path)):
            raise Refusal("BadRequest", "path must be an absolute directory")
        spec = domain_spec(raw, "load")
        spec.path = path
        names = [spec.name, f"{spec.name}.driver"] if spec.shadow else [spec.name]
        for name in names:
            if self.life.name_taken(name):
                raise Refusal("Conflict", f"a domain named {name!r} already exists; unload it first")
        self.life.load(spec, (ident, msg["rid"]))
        return None

    def cmd_unload(self, ident, msg):
        e = self._entry(msg["name"])
        if e.kind == "client":
            raise Refusal("BadRequest", f"{e.name} is an attached client; it detaches itself")
        if e.kind == "device":
            users = sorted(o.name for o in self.table.entries.values()
                           if o is not e and o.state not in ("stopped", "failed")
                           and (e.name in o.bound_devices or (o.spec and o.spec.config.get("device") == e.name)))
            if users:
                raise Refusal("Conflict", f"device {e.name} is used by {', '.join(users)}; unload "
                                          f"{'it' if len(users) == 1 else 'them'} first")
        companion = self.table.entries.get(e.spec.companion) if e.spec and e.spec.companion else None
        if companion is not None:  # a shadow takes its driver with it
            self.life.unload(companion, None)
        return self.life.unload(e, (ident, msg["rid"]))

    def cmd_restart(self, ident, msg):
        e = self._entry(msg["name"])
        if e.kind != "domain" and e.kind != "device":
            raise Refusal("BadRequest", f"{e.name} cannot be restarted")
        self.life.restart(e, (ident, msg["rid"]))
        return None

    def cmd_kill(self, ident, msg):
        e = self._entry(msg["name"])
        how = msg["how"]
        if how not in KILL_SIGNALS:
            raise Refusal("BadRequest", f"--how must be one of {', '.join(KILL_SIGNALS)}")
        if not e.alive or not e.pid:
            raise Refusal("DomainUnavailable", f"{e.name} is {e.state}, not running")
        log.info("crash injection: %s --how %s (pid %d)", e.name, how, e.pid)
        group = e.spec.group if e.spec is not None else None
        if group and how in ("exception", "exit", "hang"):  # one member of a group, through its host
            self.life.inject(e, how)
            return {"pid": e.pid, "group": group, "hits": [e.name]}
        hits = self.life.group_members(e)  # a signal hits the process: every member of a group
        try:
            os.kill(e.pid, KILL_SIGNALS[how])
        except ProcessLookupError:
            pass
        return {"pid": e.pid, "group": group, "hits": hits}

    def cmd_heap(self, ident, msg):
        out = {"stats": self.heap.stats()}
        if msg["check"]:
            out["violations"] = [str(v) for v in self.heap.check(dead=self.table.dead_ids())]
        return out

    def cmd_logs(self, ident, msg):
        e = self._entry(msg["name"])
        return {"path": str(self.sup.paths.log(e.name))}

    def cmd_shutdown(self, ident, msg):
        log.info("shutdown requested")
        self.loop.stop()
        return {"stopping": True}


def _export_row(x: dict) -> dict:
    """What a status reader needs to call an export: its name, its interface's class and
    the module to import it from (lookup(name) without an interface does just that)."""
    module, _, cls = x["interface"].rpartition(".")
    return {"name": x["name"], "interface": cls, "module": module}
