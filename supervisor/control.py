"""Control dispatch: one table from command name to handler, and the handlers.

Owns: authentication of requests, the command table, the attach proofs in progress,
and the translation of each request into calls on the concepts below it.  Calls the table,
lifecycle, channels, devices, the heap and the endpoints.  Handlers return a reply
at once, or None when the reply comes later (a load, unload or restart is answered
by lifecycle when the domain runs, stops or fails); no handler waits.

Who speaks (DESIGN §5a, "a message speaks only for its sender"): a domain's own
requests (domains.control.DOMAIN_COMMANDS) carry its credential, and the handler acts
for the entry the credential names, never for an id in a field; a `domain_id` field
that disagrees is refused.  Operator commands need the instance token, which no domain
process is given.  Hence `ready` describes only its sender (a device description only
from the device's own process, once per incarnation), `hello` redirects only its
sender's notices, `report_hang` is a hint the watchdog verifies before it kills.

Attach proof: `attach` claims a pid, and the supervisor then watches that pid and
reclaims the client when it exits, so the claim must be the caller's own pid.  zmq's
ipc transport gives no peer credentials (no SO_PEERCRED), so the client proves it:
`attach_nonce` hands it a fresh random nonce for the claimed pid, the client writes
the nonce into /proc/self/comm, and `attach` (same socket, within ATTACH_PROOF_S)
succeeds only if /proc/<pid>/comm reads the nonce.  Linux lets only a thread of that
process write its comm (comm_write refuses every other writer, whatever its uid), so
a process that can show the nonce there is the claimed pid or one of its threads.
The pidfd is opened before the check and found still alive after it, so the pid
cannot have been reused in between.  The claim is also checked to be a live process
of our uid, not a domain's or the supervisor's, and not attached already.

The table is checked when the supervisor starts (`check_table`): every command the
control protocol defines (domains.control.COMMANDS) has a handler, and every
handler method is in the table, so a command cannot be added on one side only.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import select
import signal
import struct
import time
import traceback

import psutil

from redleaf.domains import channel as chan
from redleaf.domains.control import ANY_COMMANDS, COMMANDS, DOMAIN_COMMANDS, ProtocolError, decode_request, encode
from redleaf.domains.doorbell import RA_CALLS_MADE, RA_CALLS_SERVED
from redleaf.domains.host import SIG_HANG
from redleaf.domains.proxy import INJECT_ACTIONS

from .manifest import DomainSpec, ManifestError, check_config_size, domain_spec
from .table import RUNNING, Entry, Refusal

KILL_SIGNALS = {
    "sigkill": signal.SIGKILL,
    "sigsegv": signal.SIGSEGV,
    "exception": signal.SIGUSR1,
    "exit": signal.SIGUSR2,
    "hang": SIG_HANG,
}
_U64 = struct.Struct("<Q")
#: how long `inject` waits for the domain to say it armed the fault
INJECT_ACK_S = 5.0
#: how long an attach nonce is good for (the client writes it and asks at once)
ATTACH_PROOF_S = 10.0
MAX_PENDING_PROOFS = 256
#: a loaded domain's wire spec: its config (at most 64 KiB, manifest.MAX_CONFIG_BYTES),
#: uses and path, well inside one zygote datagram (zlink.RECV_MAX is for the replies)
MAX_SPEC_BYTES = 96 << 10
#: an automatic capability export is named "<domain id>.cap<n>" (Runtime.export_object)
_CAP_NAME = re.compile(r"^([0-9]+)\.cap")

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
            "attach_nonce": self.cmd_attach_nonce,
            "attach": self.cmd_attach,
            "detach": self.cmd_detach,
            "load": self.cmd_load,
            "unload": self.cmd_unload,
            "restart": self.cmd_restart,
            "kill": self.cmd_kill,
            "inject": self.cmd_inject,
            "inject_ack": self.cmd_inject_ack,
            "lookup": self.cmd_lookup,
            "close_channel": self.cmd_close_channel,
            "lease": self.cmd_lease,
            "register_type": self.cmd_register_type,
            "report_hang": self.cmd_report_hang,
            "bind_device": self.cmd_bind_device,
            "heap": self.cmd_heap,
            "logs": self.cmd_logs,
            "shutdown": self.cmd_shutdown,
            "spawn_child": self.cmd_spawn_child,
            "kill_child": self.cmd_kill_child,
        }
        check_table(self.handlers, self)
        self.proofs: dict[bytes, tuple[int, str, float]] = {}  # ident -> (pid, nonce, deadline)
        self._child_seq = 0  # spawned children are named <spawner>.child<n>
        #: domain id -> (pid, user's ident, rid) of an `inject` waiting for the domain's ack
        self.inject_waiters: dict[int, tuple[int, bytes, int | None]] = {}

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
            sender = self.authenticate(msg)
            msg["rid"] = rid if isinstance(rid, int) else None
            msg["_sender"] = sender  # None: the user (instance token)
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

    def authenticate(self, msg: dict) -> Entry | None:
        """Who sent `msg`: the entry its credential names, or None for the user (the
        instance token).  Refuses what the sender may not ask."""
        cmd = msg["cmd"]
        cred, tok = msg.get("cred"), msg.get("token")
        user = isinstance(tok, bytes) and hmac.compare_digest(tok, self.sup.token)
        if cmd in DOMAIN_COMMANDS or (cmd in ANY_COMMANDS and cred is not None and not user):
            e = self.table.sender(cred)
            if e is None or e.dying:
                if cred is None:
                    raise Refusal("AuthError", f"{cmd!r} acts for a domain: send it with that domain's credential "
                                               f"(the instance token names no domain)")
                raise Refusal("AuthError", "unknown or revoked domain credential (its domain has exited, "
                                           "been restarted or detached)")
            claimed = msg.get("domain_id")
            if claimed is not None and claimed != e.id:
                raise Refusal("AuthError", f"this credential is domain {e.id}'s, not {claimed!r}'s: "
                                           f"a message speaks only for its sender")
            return e
        if not user:
            if cred is not None:
                raise Refusal("AuthError", f"{cmd!r} is a user command: it needs the instance token, "
                                           f"and a domain credential cannot issue it")
            raise Refusal("AuthError", "missing or wrong instance token")
        return None

    def _caller(self, msg: dict) -> Entry:
        e = msg["_sender"]
        assert e is not None, "authenticate() returns an entry for every domain command"
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
        if len(msg["exports"]) > 256:
            raise Refusal("BadRequest", "a domain exports at most 256 names")
        for x in msg["exports"]:
            if not (isinstance(x, dict) and all(isinstance(x.get(k), str) for k in ("name", "interface", "fingerprint"))):
                raise Refusal("BadRequest", "exports must be maps with name, interface and fingerprint")
            owner = self.table.export_owner(x["name"], x["interface"])
            if owner is not None and owner is not e:
                raise Refusal("Conflict", f"{x['name']!r} ({x['interface']}) is already exported by {owner.name!r}")
            # a name is reserved for the domain of that name (while it restarts too), and
            # an automatic capability name for the domain whose id it carries
            named = self.table.entries.get(x["name"])
            cap = _CAP_NAME.match(x["name"])
            if (named is not None and named is not e) or (cap and int(cap.group(1)) != e.id):
                raise Refusal("Conflict", f"{x['name']!r} belongs to another domain; export under a name of your own")
            exports.append({k: x[k] for k in ("name", "interface", "fingerprint")})
        if e.kind == "device":
            # only a device's own process describes it, once per incarnation: the
            # supervisor writes into the shell it names, so it must not move later
            dev = self.devices.check_ready(msg.get("device"))
            if e.device is not None and e.device != dev:
                raise Refusal("Conflict", f"device {e.name} has described its BAR and shell already")
            e.device = dev
        elif msg.get("device") is not None:
            raise Refusal("BadRequest", f"{e.name} is not a device: only a device's own process describes one")
        e.exports = exports
        e.ident = ident
        self.life.ready(e)
        return {}

    def cmd_init_failed(self, ident, msg):
        e = self._caller(msg)
        e.init_error = msg["error"].splitlines()[0] if msg["error"] else "constructor failed"
        log.warning("domain %s failed to initialise: %s", e.name, msg["error"])
        return {}

    def _check_attach_pid(self, pid: int) -> None:
        if pid <= 0:
            raise Refusal("BadRequest", f"no process {pid} to attach")
        name = f"client-{pid}"
        if name in self.table.entries:
            raise Refusal("Conflict", f"process {pid} is already attached as domain {self.table.entries[name].id}; "
                                      f"a process is one domain: reuse its client, or close() it first")
        if pid in self.table.by_pid or pid in (os.getpid(), self.life.zygote_pid):
            raise Refusal("AuthError", f"process {pid} is part of the instance, not a client")
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            raise Refusal("BadRequest", f"no process {pid} to attach") from None
        if uid != os.getuid():
            raise Refusal("AuthError", f"process {pid} belongs to uid {uid}; only our own processes attach")

    def cmd_attach_nonce(self, ident, msg):
        pid = msg["pid"]
        self._check_attach_pid(pid)
        now = time.monotonic()
        for k in [k for k, (_p, _n, dl) in self.proofs.items() if dl < now]:
            del self.proofs[k]
        if len(self.proofs) >= MAX_PENDING_PROOFS:
            raise Refusal("Busy", "too many attaches in progress; try again")
        nonce = secrets.token_hex(8)[:15]  # a comm holds 15 characters
        self.proofs[ident] = (pid, nonce, now + ATTACH_PROOF_S)
        return {"nonce": nonce}

    def cmd_attach(self, ident, msg):
        pid = msg["pid"]
        proof = self.proofs.pop(ident, None)
        if proof is None or proof[0] != pid or proof[2] < time.monotonic():
            raise Refusal("AuthError", f"no attach nonce pending for pid {pid} on this connection "
                                       f"(ask attach_nonce first, and attach within {ATTACH_PROOF_S:g}s)")
        self._check_attach_pid(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise Refusal("BadRequest", f"no process {pid} to attach") from None
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().rstrip("\n")
        except OSError:
            comm = ""
        if not hmac.compare_digest(comm.encode(), proof[1].encode()) or select.select([pidfd], [], [], 0)[0]:
            os.close(pidfd)
            raise Refusal("AuthError", f"process {pid} did not show the attach nonce in /proc/{pid}/comm: "
                                       f"a client attaches only as its own process")
        name = f"client-{pid}"
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
        return {"domain_id": e.id, "heap": str(self.sup.paths.heap), "cred": e.cred}

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
        # the segment's name goes to the two parties only, and to nobody else ever
        self.out.send(owner.ident, {"push": "channel_open", "channel": rec.id, "segment": rec.segment,
                                    "size": rec.size, "caller": caller.id, "export": exp["name"],
                                    "interface": exp["interface"]})
        self.channels.ring(owner.id)
        return {"channel": rec.id, "segment": rec.segment, "size": rec.size, "callee": owner.id}

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
        """A caller's deadline passed: a hint, which the watchdog verifies (a call of the
        reporter's really outstanding on its channel to the callee, the callee's
        heartbeat standing still) before it kills anyone."""
        reporter = self._caller(msg)
        e = self.table.by_id.get(msg["callee"])
        if e is None or not e.alive or e is reporter:
            return {"suspected": False}
        rec = self.channels.between(reporter.id, e.id)
        if rec is None:
            raise Refusal("BadRequest", f"domain {reporter.id} has no channel to domain {e.id}: "
                                        f"only a caller with a call outstanding reports a hang")
        if _U64.unpack_from(rec.buf, chan.REQ_SEQ)[0] == _U64.unpack_from(rec.buf, chan.RESP_SEQ)[0]:
            raise Refusal("NotHung", f"no call of domain {reporter.id} to {e.name} is outstanding: "
                                     f"nothing to report")
        self.sup.watchdog.suspect(e, reporter, rec, time.monotonic())
        return {"suspected": True}

    def cmd_bind_device(self, ident, msg):
        drv = self._caller(msg)
        if drv.kind != "domain":
            raise Refusal("BadRequest", f"{drv.name} is not a driver domain: only a loaded domain binds a device")
        dev = self.table.entries.get(msg["device"])
        if dev is None or dev.kind != "device":
            raise Refusal("NotFound", f"no device named {msg['device']!r} (devices are [[device]] entries in the manifest)")
        return self.devices.bind(drv, dev)

    def cmd_spawn_child(self, ident, msg):
        """A child domain of the sender: the target its manifest entry fixes, temporary,
        its only capability the sender itself (as `parent`), the config the sender gives
        (its own business: the child's arguments).  Answered at once with the child's
        id; its death comes later as a `child_exit` push."""
        parent = self._caller(msg)
        spec = parent.spec
        if parent.kind != "domain" or spec is None or not spec.may_spawn:
            raise Refusal("AuthError", f"{parent.name} may not spawn children: its manifest entry needs "
                                       f"may_spawn = true")
        check_config_size(msg["config"], f"spawn_child ({parent.name})")
        self._child_seq += 1
        name = f"{parent.name}.child{self._child_seq}"
        while self.life.name_taken(name):
            self._child_seq += 1
            name = f"{parent.name}.child{self._child_seq}"
        child = DomainSpec(name=name, target=spec.spawn_target, restart="temporary", config=msg["config"],
                           uses={"parent": parent.name}, watchdog_s=spec.watchdog_s)
        e = self.life.spawn_child(parent, child)
        return {"id": e.id, "name": e.name}

    def cmd_kill_child(self, ident, msg):
        parent = self._caller(msg)
        e = self.table.by_id.get(msg["child"])
        if e is None or e.spawner is not parent or e.spawner_id != parent.id:
            raise Refusal("NotFound", f"domain {msg['child']} is not a running child of {parent.name}")
        self.life.kill_child(e)
        return {}

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
        if path is not None and len(path) > 4096:
            raise Refusal("BadRequest", "path is longer than 4096 characters (PATH_MAX)")
        spec = domain_spec(raw, "load")
        spec.path = path
        # the spec travels to the zygote in one datagram: refuse here, before anything
        # is assigned, what could not be sent (a send that fails halfway left an entry)
        wire = len(encode(spec.to_wire()))
        if wire > MAX_SPEC_BYTES:
            raise Refusal("BadRequest", f"load ({spec.name}): the domain's spec (config, uses, path) is {wire} "
                                        f"bytes encoded, more than {MAX_SPEC_BYTES}; put bulk data in a file")
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
        if e.spawner is not None:
            raise Refusal("BadRequest", f"{e.name} is a spawned child of {e.spawner.name}: it is not "
                                        f"restarted (unload or kill it; its spawner starts children)")
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

    def cmd_inject(self, ident, msg):
        """Arm an in-call fault in a domain (crash injection *inside* a call, DESIGN §5:
        the Nth call of `method` raises an undeclared exception, exits, hangs or stalls).

        Delivered as a push on the domain's own control connection, like channel
        notices; the domain arms its dispatchers and acks (`inject_ack`), and only then
        is the user answered, so a call the user sends after the reply is counted."""
        e = self._entry(msg["name"])
        action, nth, stall = msg["action"], msg["nth"], float(msg["stall_s"])
        if action not in INJECT_ACTIONS:
            raise Refusal("BadRequest", f"action must be one of {', '.join(INJECT_ACTIONS)}, not {action!r}")
        if not 1 <= nth <= 1 << 31:
            raise Refusal("BadRequest", f"nth must be between 1 and 2^31 (the first call after arming is 1), got {nth}")
        if not 0.0 <= stall <= 3600.0:
            raise Refusal("BadRequest", f"stall_s must be between 0 and 3600 seconds, got {stall}")
        if e.kind != "domain":
            raise Refusal("BadRequest", f"{e.name} is a {e.kind}: only a domain's calls can be armed; "
                                        f"use `redleaf kill` for a {e.kind}")
        if e.state != RUNNING or not e.pid or e.ident is None:
            raise Refusal("DomainUnavailable", f"{e.name} is {e.state}, not running; wait until it is")
        if action == "exit" and e.spec is not None and e.spec.group:
            raise Refusal("BadRequest", f"{e.name} shares its process with group {e.spec.group}: an in-call "
                                        f"exit would end the whole group; use `redleaf kill {e.name} --how exit`")
        if e.id in self.inject_waiters:
            raise Refusal("Busy", f"an inject into {e.name} is still waiting for its acknowledgement; try again")
        log.info("crash injection: %s %s at call %d of %s (pid %d)", e.name, action, nth, msg["method"], e.pid)
        self.inject_waiters[e.id] = (e.pid, ident, msg["rid"])
        self.out.send(e.ident, {"push": "inject", "method": msg["method"], "nth": nth, "action": action,
                                "stall_s": stall})
        self.channels.ring(e.id)  # a sleeping domain reads its pushes when woken
        self.loop.after(INJECT_ACK_S, self._inject_timeout, e.id, e.pid, msg["rid"])
        return None

    def cmd_inject_ack(self, ident, msg):
        e = self._caller(msg)
        w = self.inject_waiters.get(e.id)
        if w is None or w[0] != e.pid:
            return {}  # answered already (timed out), or meant for an earlier incarnation
        del self.inject_waiters[e.id]
        _pid, uident, rid = w
        if msg["error"]:
            self.out.send(uident, {"ok": False, "kind": "BadRequest", "error": f"{e.name}: {msg['error']}", "rid": rid})
        else:
            self.out.send(uident, {"ok": True, "pid": e.pid, "rid": rid})
        return {}

    def domain_died(self, did: int) -> None:
        """An inject waiting on a domain that died is answered at once, not at its timeout."""
        w = self.inject_waiters.pop(did, None)
        if w is not None:
            e = self.table.by_id.get(did)
            name = e.name if e is not None else f"domain {did}"
            self.out.send(w[1], {"ok": False, "kind": "NotArmed", "rid": w[2],
                                 "error": f"{name} died before it acknowledged the fault (nothing was armed)"})

    def _inject_timeout(self, did: int, pid: int, rid) -> None:
        w = self.inject_waiters.get(did)
        if w is None or w[0] != pid or w[2] != rid:
            return
        del self.inject_waiters[did]
        e = self.table.by_id.get(did)
        name = e.name if e is not None else f"domain {did}"
        self.out.send(w[1], {"ok": False, "kind": "NotArmed", "rid": rid,
                             "error": f"{name} did not acknowledge the fault within {INJECT_ACK_S:g}s (busy in a "
                                      f"long call, hung, or dead); it may still arm later: check `redleaf status`"})

    def cmd_heap(self, ident, msg):
        if msg["check"]:
            # what is due now (a dead caller's call just ended: its lent slots, what was
            # moved to it) is released before the check, not up to a tick later, so a
            # check right after a call ends does not report what is already settled
            self.channels.settle_deferred()
        out = {"stats": self.heap.stats()}
        if msg["check"]:
            out["violations"] = [str(v) for v in self.heap.check(dead=self.table.dead_ids())]
            # what else a dead domain could leave behind, for a checker to compare with the
            # table (crashtest's no-leaked-channel invariant): read only, user-only (the
            # `heap` command needs the instance token)
            out["channels"] = self.channels.snapshot()
            out["leftovers"] = self._instance_objects()
        return out

    def _instance_objects(self) -> dict:
        """The doorbells in the runtime directory (by domain id) and the instance's
        /dev/shm files: each should belong to a live domain, or be the heap."""
        bells = []
        for p in self.sup.paths.root.glob("bell-*"):
            try:
                bells.append(int(p.name[len("bell-"):]))
            except ValueError:
                continue
        heap = self.sup.paths.heap
        prefix = heap.name[:-len(".heap")] + "."
        shm = sorted(str(p) for p in heap.parent.glob(prefix + "*"))
        return {"bells": sorted(bells), "shm": shm, "heap_file": str(heap)}

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
