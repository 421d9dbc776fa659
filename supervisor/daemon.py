"""The supervisor daemon: the domain table, loader, heap manager, name service and
fault handler of one instance, in one single-threaded event loop.

Single-threaded on purpose: every state change happens in one place, in order, and
no lock is needed.  The loop waits on the control socket (ROUTER), the zygote's
exit reports, attached clients' pidfds, and a timer for the watchdog, backoff
restarts, deferred borrows and orphan sweeps.

On a death, in this order (DESIGN §3, Erlang's rule): mark it dead; fail every call
in flight to it; reclaim its heap objects; release its channels; publish DOWN; then
apply its restart policy.
"""

from __future__ import annotations

import collections
import hmac
import heapq
import logging
import os
import secrets
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field

import msgpack
import psutil
import zmq

from redleaf.domains import channel as chan
from redleaf.domains.control import MAX_FRAME, ProtocolError, decode_request, encode
from redleaf.domains.doorbell import RA_BUSY, RA_CALLS_MADE, RA_CALLS_SERVED, RA_HEARTBEAT, Bell, make_bell
from redleaf.domains.host import SIG_HANG
from redleaf.domains.paths import InstancePaths

from .manifest import DomainSpec, Manifest, ManifestError, domain_spec, expand_shadow
from .policy import RestartTracker
from .table import BACKOFF, CRASHED, FAILED, RUNNING, STARTING, STOPPED, STOPPING, Entry
from . import stale

SUPERVISOR_ID = 1
MAX_DOMAINS = 256
TICK_S = 0.05
STOP_GRACE_S = 2.0
BUSY_WATCHDOG_FACTOR = 10  # a domain inside a call gets this many watchdog periods
_U64 = struct.Struct("<Q")

KILL_SIGNALS = {
    "sigkill": signal.SIGKILL,
    "sigsegv": signal.SIGSEGV,
    "exception": signal.SIGUSR1,
    "exit": signal.SIGUSR2,
    "hang": SIG_HANG,
}

log = logging.getLogger("redleaf.supervisor")


class Refusal(Exception):
    """A control request that is refused with an error reply (kind, message)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class ChannelRec:
    id: int
    caller: int
    callee: int
    rref: object
    offset: int
    size: int
    ends: set = field(default_factory=set)
    deferred: list = field(default_factory=list)  # heap slots lent to the callee by a dead caller

    @property
    def buf(self):
        return self.rref.buf


class Supervisor:
    def __init__(self, name: str, manifest: Manifest, *, foreground: bool = True):
        self.name = name
        self.manifest = manifest
        self.paths = InstancePaths(name)
        self.foreground = foreground
        self.entries: dict[str, Entry] = {}
        self.by_id: dict[int, Entry] = {}
        self.by_pid: dict[int, Entry] = {}
        self.free_ids = collections.deque(range(2, MAX_DOMAINS))
        self.channels: dict[int, ChannelRec] = {}
        self.next_channel = 1
        self.timers: list = []
        self.boot_queue: collections.deque = collections.deque()
        self.boot_waiters: dict[str, list] = {}  # queued name -> load requests to answer
        self.running = True
        self.shutdown_waiters: list = []
        self.zygote_pid = 0
        self.exit_codes: dict[int, int] = {}

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        """Clean a stale instance of this name, then lay out the runtime dir and heap."""
        stale.clean_stale(self.name)
        root = self.paths.root
        for attempt in range(5):
            root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                root.mkdir(mode=0o700)
                break
            except FileNotFoundError:  # an instance going down removed the empty parent
                if attempt == 4:
                    raise
        os.chmod(root, 0o700)
        self.paths.logs.mkdir(mode=0o700)
        self._setup_logging()
        self.token = secrets.token_bytes(32)
        fd = os.open(self.paths.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, self.token)
        os.close(fd)
        self.paths.supervisor_pid.write_text(f"{os.getpid()} {stale.create_time(os.getpid())}\n")
        from redleaf.shared_heap import Heap, HeapManager

        self.heap = HeapManager.create(str(self.paths.heap), self.manifest.heap_size,
                                       records=self.manifest.heap_records, max_domains=MAX_DOMAINS)
        self.heap.register_domain(SUPERVISOR_ID)
        self.heap_mem = self.heap.mem
        self.sheap = Heap.open(str(self.paths.heap), SUPERVISOR_ID,
                               lease_fn=lambda kind, count: self.heap.lease(SUPERVISOR_ID, kind, count),
                               register_type_fn=self.heap.register_type)
        # The zygote must be forked before this process creates a zmq context.
        from .zygote import start_zygote

        self.zygote_pid, self.zsock = start_zygote()
        self._record_pids()
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.router.bind(self.paths.control)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(self.paths.events)
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.zsock.fileno(), zmq.POLLIN)
        for spec in self.manifest.boot_order():
            self.boot_queue.append(spec)
        log.info("instance %s up: heap %s (%d MiB), manifest %s", self.name, self.paths.heap,
                 self.manifest.heap_size >> 20, self.manifest.source)

    def _setup_logging(self) -> None:
        log.setLevel(logging.INFO)
        log.handlers.clear()
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
        fh = logging.FileHandler(self.paths.log("supervisor"))
        fh.setFormatter(fmt)
        log.addHandler(fh)
        if self.foreground:
            sh = logging.StreamHandler(sys.stderr)
            sh.setFormatter(fmt)
            log.addHandler(sh)
        log.propagate = False

    # ------------------------------------------------------------------ loop
    def serve_forever(self) -> None:
        try:
            self._boot_next()
            while self.running:
                timeout = self._next_timeout()
                for sock, _ev in self.poller.poll(timeout):
                    if sock is self.router:
                        self._drain_router()
                    elif sock == self.zsock.fileno():
                        self._drain_zygote()
                    else:
                        self._on_pidfd(sock)
                self._run_timers()
        finally:
            self.teardown()

    def _next_timeout(self) -> int:
        if self.timers:
            return max(0, min(int(TICK_S * 1000), int((self.timers[0][0] - time.monotonic()) * 1000) + 1))
        return int(TICK_S * 1000)

    def after(self, delay: float, fn, *args) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, id(fn) ^ len(self.timers), fn, args))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self.timers)
            fn(*args)
        self._tick(now)

    _last_tick = 0.0

    def _tick(self, now: float) -> None:
        if now - self._last_tick < TICK_S:
            return
        self._last_tick = now
        self._watchdog(now)
        self._settle_deferred()

    # ------------------------------------------------------------------ control
    def _drain_router(self) -> None:
        for _ in range(256):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            ident, envelope, frame = frames[0], frames[1:-1], frames[-1]
            reply = self._handle(ident, frame)
            if reply is not None:
                self._send(ident, reply, envelope)

    def _send(self, ident: bytes, msg: dict, envelope=()) -> None:
        try:
            self.router.send_multipart([ident, *envelope, encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the peer is gone; nothing to tell

    def _handle(self, ident: bytes, frame: bytes) -> dict | None:
        rid = None
        try:
            msg = decode_request(frame)
            rid = msg.get("rid")
            tok = msg.get("token")
            if not isinstance(tok, bytes) or not hmac.compare_digest(tok, self.token):
                raise Refusal("AuthError", "missing or wrong instance token")
            handler = getattr(self, "cmd_" + msg["cmd"])
            out = handler(ident, msg)
            if out is None:  # deferred reply
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
        e = self.entries.get(name)
        if e is None:
            raise Refusal("NotFound", f"no domain named {name!r} (see `redleaf status`)")
        return e

    def _caller(self, msg: dict) -> Entry:
        e = self.by_id.get(msg["domain_id"])
        if e is None:
            raise Refusal("NotFound", f"unknown domain id {msg['domain_id']}")
        return e

    def cmd_ping(self, ident, msg):
        return {"instance": self.name, "pid": os.getpid()}

    def cmd_hello(self, ident, msg):
        e = self._caller(msg)
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
            owner = self._export_owner(x["name"], x["interface"])
            if owner is not None and owner is not e:
                raise Refusal("Conflict", f"{x['name']!r} ({x['interface']}) is already exported by {owner.name!r}")
            exports.append(x)
        e.exports = exports
        e.ident = ident
        dev = msg.get("device")
        if e.kind == "device":
            if not (isinstance(dev, dict) and all(isinstance(dev.get(k), int) for k in ("bar", "bar_size", "shell"))
                    and isinstance(dev.get("quiesce"), str)):
                raise Refusal("BadRequest", "a device's ready message must describe its BAR")
            e.device = dev
        if e.state == STARTING:
            e.ready_at = time.monotonic()
            names = sorted({x["name"] for x in exports})
            what = f"serving {', '.join(names)}" if names else ("device ready" if e.kind == "device" else "running")
            self._set_state(e, RUNNING, what)
            self._answer_waiters(e, {"ok": True, "id": e.id, "pid": e.pid})
            self._publish("UP", e)
            self._boot_next()
        return {}

    def cmd_init_failed(self, ident, msg):
        e = self._caller(msg)
        e.init_error = msg["error"]
        log.warning("domain %s failed to initialise: %s", e.name, msg["error"])
        return {}

    def cmd_attach(self, ident, msg):
        pid = msg["pid"]
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            raise Refusal("BadRequest", f"no process {pid} to attach") from None
        name = f"client-{pid}"
        if name in self.entries:
            os.close(pidfd)
            raise Refusal("Conflict", f"process {pid} is already attached as domain {self.entries[name].id}; "
                                      f"a process is one domain: reuse its client, or close() it first")
        e = Entry(name=name, kind="client", spec=None, tracker=None)
        self._assign_id(e)
        e.pid = pid
        e.pidfd = pidfd
        e.ident = ident
        e.started_at = e.ready_at = time.monotonic()
        self._register(e)
        self.poller.register(pidfd, zmq.POLLIN)
        self._set_state(e, RUNNING, "attached")
        return {"domain_id": e.id, "heap": str(self.paths.heap)}

    def cmd_detach(self, ident, msg):
        e = self._caller(msg)
        if e.kind != "client":
            raise Refusal("BadRequest", "only attached clients detach")
        e.stop_requested = True
        self._on_death(e, 0, "detached")
        return {}

    def cmd_status(self, ident, msg):
        stats = self._heap_stats_by_domain()
        rows = []
        for e in self.entries.values():
            rows.append(self._status_row(e, stats))
        return {"instance": self.name, "domains": rows, "pid": os.getpid()}

    def _status_row(self, e: Entry, stats: dict) -> dict:
        cpu = rss = None
        if e.alive:
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
                "exports": [x["name"] for x in e.exports]}

    def _heap_stats_by_domain(self) -> dict:
        try:
            st = self.heap.stats()
        except Exception as ex:  # stats are informational; never fail status over them
            log.warning("heap stats failed: %s", ex)
            return {}
        out = {}
        for did, d in st.get("domains", {}).items():
            out[int(did)] = {"bytes": d.get("bytes", 0), "objects": d.get("objects", 0)}
        return out

    def cmd_load(self, ident, msg):
        raw = {"name": msg["name"], "target": msg["target"], "restart": msg["restart"],
               "config": msg["config"], "uses": msg["uses"], "shadow": msg["shadow"]}
        for k in ("max_restarts", "period_s", "backoff_s", "watchdog_s"):
            if k in msg:
                raw[k] = msg[k]
        path = msg.get("path")
        if path is not None and not (isinstance(path, str) and os.path.isabs(path)):
            raise Refusal("BadRequest", "path must be an absolute directory")
        try:
            spec = domain_spec(raw, "load")
            spec.path = path
            specs = expand_shadow(spec)
        except ManifestError as ex:
            raise Refusal("BadRequest", str(ex)) from None
        for spec in specs:
            if spec.name in self.entries or any(s.name == spec.name for s in self.boot_queue):
                raise Refusal("Conflict", f"a domain named {spec.name!r} already exists; unload it first")
        public = specs[-1]
        if len(specs) == 2:  # shadowed: the driver now, the shadow once the driver is up
            self._spawn(self._new_entry(specs[0]))
            self.boot_queue.append(public)
            self.boot_waiters[public.name] = [(ident, msg["rid"])]
            return None
        e = self._new_entry(public)
        self._spawn(e)
        e.waiters.append((ident, msg["rid"]))
        return None

    def cmd_unload(self, ident, msg):
        e = self._entry(msg["name"])
        if e.kind == "client":
            raise Refusal("BadRequest", f"{e.name} is an attached client; it detaches itself")
        companion = self.entries.get(e.spec.companion) if e.spec and e.spec.companion else None
        if companion is not None:  # a shadow takes its driver with it
            self._unload(companion, None)
        return self._unload(e, (ident, msg["rid"]))

    def _unload(self, e: Entry, waiter) -> dict | None:
        e.stop_requested = True
        e.spec.restart = "temporary"
        if e.alive:
            if waiter is not None:
                e.waiters.append(waiter)
            self._stop(e, "unloaded on request")
            return None
        self._forget(e)
        return {"state": e.state}

    def cmd_restart(self, ident, msg):
        e = self._entry(msg["name"])
        if e.kind != "domain" and e.kind != "device":
            raise Refusal("BadRequest", f"{e.name} cannot be restarted")
        e.waiters.append((ident, msg["rid"]))
        if e.alive:
            e.restart_requested = True
            self._stop(e, "restart requested")
        else:
            e.tracker.history.clear()
            self._spawn(e)
        return None

    def cmd_kill(self, ident, msg):
        e = self._entry(msg["name"])
        how = msg["how"]
        if how not in KILL_SIGNALS:
            raise Refusal("BadRequest", f"--how must be one of {', '.join(KILL_SIGNALS)}")
        if not e.alive:
            raise Refusal("DomainUnavailable", f"{e.name} is {e.state}, not running")
        log.info("crash injection: %s --how %s (pid %d)", e.name, how, e.pid)
        try:
            os.kill(e.pid, KILL_SIGNALS[how])
        except ProcessLookupError:
            pass
        return {"pid": e.pid}

    def cmd_report_hang(self, ident, msg):
        self._caller(msg)
        e = self.by_id.get(msg["callee"])
        if e is not None and e.alive:
            log.warning("domain %s reported hung by domain %d (call deadline passed); killing it",
                        e.name, msg["domain_id"])
            e.hang_reported = True
            os.kill(e.pid, signal.SIGKILL)
        return {}

    def cmd_bind_device(self, ident, msg):
        """A driver claims a device: it learns where the BAR is; the device learns whom
        to interrupt; the supervisor learns what to quiesce if the driver dies."""
        drv = self._caller(msg)
        dev = self.entries.get(msg["device"])
        if dev is None or dev.kind != "device":
            raise Refusal("NotFound", f"no device named {msg['device']!r} (devices are [[device]] entries in the manifest)")
        if dev.state != RUNNING or dev.device is None:
            raise Refusal("DomainUnavailable", f"device {dev.name} is {dev.state}")
        for other in self.by_id.values():
            if other is not drv and dev.name in other.bound_devices:
                raise Refusal("Conflict", f"device {dev.name} is already driven by {other.name}")
        if dev.name not in drv.bound_devices:
            drv.bound_devices.append(dev.name)
        shell = self.heap_mem[dev.device["shell"]:dev.device["shell"] + 8]
        # the driver's id, and a bind counter that tells the device host to re-open
        # the driver's doorbell (the id may be a reused one, with a new FIFO)
        struct.pack_into("<I", shell, 4, (struct.unpack_from("<I", shell, 4)[0] + 1) & 0xFFFFFFFF)
        struct.pack_into("<I", shell, 0, drv.id)
        return dict(dev.device, device_id=dev.id)

    def _quiesce_devices(self, e: Entry) -> None:
        """Before a dead driver's memory is reclaimed, stop its devices' DMA into it
        (the PCI bus-master-enable bit, as a kernel would on a function reset)."""
        import importlib

        for name in e.bound_devices:
            dev = self.entries.get(name)
            if dev is None or dev.device is None or not dev.alive:
                continue
            info = dev.device
            bar = self.heap_mem[info["bar"]:info["bar"] + info["bar_size"]]
            struct.pack_into("<I", self.heap_mem, info["shell"], 0)
            try:
                mod = importlib.import_module(info["quiesce"])
                token = mod.quiesce_request(bar)
                self._ring(dev.id)
                deadline = time.monotonic() + 0.5
                while not mod.quiesce_acked(bar, token):
                    if time.monotonic() > deadline:
                        log.error("device %s did not acknowledge quiesce; reclaiming anyway", name)
                        break
                    time.sleep(0.0002)
                    self._ring(dev.id)
            except Exception as ex:
                log.error("quiesce of %s failed: %s", name, ex)
        e.bound_devices = []

    def cmd_lookup(self, ident, msg):
        caller = self._caller(msg)
        owner, exp = None, None
        for e in self.entries.values():
            for x in e.exports:
                if x["name"] == msg["name"] and (exp is None or x["interface"] == msg["interface"]):
                    owner, exp = e, x
        if owner is None:
            named = self.entries.get(msg["name"])
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
        rec = self._open_channel(caller, owner)
        self._send(owner.ident, {"push": "channel_open", "channel": rec.id, "offset": rec.offset,
                                 "size": rec.size, "caller": caller.id, "export": exp["name"],
                                 "interface": exp["interface"]})
        self._ring(owner.id)
        return {"channel": rec.id, "offset": rec.offset, "size": rec.size, "callee": owner.id}

    def cmd_close_channel(self, ident, msg):
        e = self._caller(msg)
        rec = self.channels.get(msg["channel"])
        if rec is None or e.id not in (rec.caller, rec.callee):
            return {}
        self._drop_end(rec, e.id)
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

    def cmd_heap(self, ident, msg):
        out = {"stats": self.heap.stats()}
        if msg["check"]:
            out["violations"] = [str(v) for v in self.heap.check(dead=self._dead_ids())]
        return out

    def cmd_logs(self, ident, msg):
        e = self._entry(msg["name"])
        return {"path": str(self.paths.log(e.name))}

    def cmd_shutdown(self, ident, msg):
        log.info("shutdown requested")
        self.running = False
        return {"stopping": True}

    # ------------------------------------------------------------------ lifecycle
    def _new_entry(self, spec: DomainSpec) -> Entry:
        tracker = RestartTracker(spec.restart, spec.max_restarts, spec.period_s, spec.backoff_s, spec.backoff_max_s)
        e = Entry(name=spec.name, kind=spec.kind, spec=spec, tracker=tracker)
        self.entries[spec.name] = e
        return e

    def _assign_id(self, e: Entry) -> None:
        if not self.free_ids:
            raise Refusal("Exhausted", f"all {MAX_DOMAINS} domain slots are in use")
        e.id = self.free_ids.popleft()

    def _register(self, e: Entry) -> None:
        self.entries[e.name] = e
        self.by_id[e.id] = e
        self.by_pid[e.pid] = e
        self.heap.register_domain(e.id)
        make_bell(self.paths.bell(e.id))
        self._record_pids()

    def _spawn(self, e: Entry) -> None:
        self._assign_id(e)
        make_bell(self.paths.bell(e.id))
        self.heap.register_domain(e.id)
        e.exports = []
        e.init_error = ""
        e.stop_requested = False
        e.restart_requested = False
        e.hang_reported = False
        e.exit_code = None
        spec = dict(e.spec.to_wire(), instance=self.name, domain_id=e.id, token=self.token,
                    heap=str(self.paths.heap), log=str(self.paths.log(e.name)))
        self.zsock.send(msgpack.packb({"req": e.id, "spec": spec}))
        pid = self._await_spawn(e.id)
        e.pid = pid
        e.started_at = time.monotonic()
        e.heartbeat = 0
        e.heartbeat_at = e.started_at
        e.psutil_proc = None
        self.by_id[e.id] = e
        self.by_pid[pid] = e
        self._record_pids()
        self._set_state(e, STARTING, f"spawned pid {pid}")
        code = self.exit_codes.pop(pid, None)
        if code is not None:
            self._on_death(e, code, "exited during start")

    def _await_spawn(self, req: int) -> int:
        while True:
            msg = msgpack.unpackb(self.zsock.recv(1 << 16), raw=False)
            if "spawned" in msg and msg["req"] == req:
                return msg["spawned"]
            self._zygote_msg(msg)

    def _drain_zygote(self) -> None:
        while True:
            try:
                data = self.zsock.recv(1 << 16, socket_nonblock())
            except BlockingIOError:
                return
            if not data:
                log.critical("the zygote died; shutting down")
                self.running = False
                return
            self._zygote_msg(msgpack.unpackb(data, raw=False))

    def _zygote_msg(self, msg: dict) -> None:
        if "exit" in msg:
            pid, code = msg["exit"], msg["code"]
            e = self.by_pid.get(pid)
            if e is None or e.kind == "client":
                self.exit_codes[pid] = code
                return
            self._on_death(e, code, _describe_exit(code))

    def _on_pidfd(self, fd: int) -> None:
        for e in list(self.by_id.values()):
            if e.pidfd == fd:
                self._on_death(e, None, "client process exited")
                return
        self.poller.unregister(fd)

    def _stop(self, e: Entry, reason: str) -> None:
        e.stop_requested = True
        self._set_state(e, STOPPING, reason)
        try:
            os.kill(e.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        pid = e.pid
        self.after(STOP_GRACE_S, self._stop_timeout, e, pid)

    def _stop_timeout(self, e: Entry, pid: int) -> None:
        if e.pid == pid and e.alive:
            log.warning("%s did not stop within %.1fs; SIGKILL", e.name, STOP_GRACE_S)
            os.kill(pid, signal.SIGKILL)

    def _on_death(self, e: Entry, code: int | None, how: str) -> None:
        if e.id == 0 or e.pid == 0:
            return
        did, pid = e.id, e.pid
        requested = e.stop_requested
        abnormal = code is None and e.kind == "client" and not requested
        if code is not None:
            abnormal = code != 0
        if e.hang_reported if hasattr(e, "hang_reported") else False:
            how = "killed as hung (call deadline passed)"
        # 1. mark it dead
        e.exit_code = code
        self.by_pid.pop(pid, None)
        e.pid = 0
        self._set_state(e, STOPPED if (requested and not getattr(e, "restart_requested", False) and not abnormal)
                        else CRASHED if abnormal else STOPPED, f"pid {pid} {how}")
        if e.pidfd >= 0:
            self.poller.unregister(e.pidfd)
            os.close(e.pidfd)
            e.pidfd = -1
        # 2. fail every call in flight to it; 4 (part). the channels it called through
        for rec in list(self.channels.values()):
            if rec.callee == did:
                chan.fail_inflight(rec.buf)
                self._ring(rec.caller)  # even with nothing seen in flight: a racing post sees the mark
                rec.ends.discard(did)
            elif rec.caller == did:
                chan.set_state(rec.buf, chan.CALLER_DEAD)
                rec.ends.discard(did)
                callee = self.by_id.get(rec.callee)
                if callee is not None and callee.ident is not None and rec.callee in rec.ends:
                    self._send(callee.ident, {"push": "channel_closed", "channel": rec.id, "peer": did})
        # 3. reclaim every heap object it owned (after stopping any device's DMA into it)
        if e.bound_devices:
            self._quiesce_devices(e)
        t0 = time.perf_counter()
        report = self.heap.reclaim(did, borrow_active=self._borrow_active)
        for slot, borrower in getattr(report, "deferred", []):
            rec = self._channel_between(did, borrower)
            if rec is not None:
                rec.deferred.append(slot)
            else:
                self.heap.release_deferred(slot)
        log.info("reclaimed domain %s (id %d): %s in %.1f ms", e.name, did, report, (time.perf_counter() - t0) * 1e3)
        # 4. release its channels
        for rec in list(self.channels.values()):
            self._maybe_free_channel(rec)
        try:
            os.unlink(self.paths.bell(did))
        except FileNotFoundError:
            pass
        del self.by_id[did]
        self.free_ids.append(did)
        e.id = 0
        self._record_pids()
        # 5. publish DOWN, only now that everything is released
        self._publish("DOWN", e, code=code, how=how)
        # 6. the restart policy
        if e.kind == "client":
            del self.entries[e.name]
            return
        self._after_exit(e, abnormal, requested)

    def _after_exit(self, e: Entry, abnormal: bool, requested: bool) -> None:
        if getattr(e, "restart_requested", False):
            self._answer_waiters(e, None)  # answered when running again
            self._spawn(e)
            return
        if e.init_error and e.state != RUNNING and not e.ready_at:
            pass
        decision = e.tracker.on_exit(time.monotonic(), abnormal, requested)
        if requested or decision.action == "stop":
            self._set_state(e, STOPPED, decision.reason if not requested else e.reason)
            self._answer_waiters(e, {"ok": True, "state": STOPPED})
            if e.spec.restart == "temporary" and requested:
                self._forget(e)
            self._boot_next()
            return
        if decision.action == "fail":
            self._set_state(e, FAILED, decision.reason)
            err = e.init_error or decision.reason
            self._answer_waiters(e, {"ok": False, "kind": "DomainFailed", "error": f"{e.name} failed: {err}"})
            self._boot_next()
            return
        if e.init_error and e.waiters:
            # a load whose constructor raised: report it instead of looping
            self._set_state(e, FAILED, f"initialisation failed: {e.init_error}")
            self._answer_waiters(e, {"ok": False, "kind": "InitFailed",
                                     "error": f"{e.name} failed to start: {e.init_error}"})
            self._forget(e)
            self._boot_next()
            return
        e.restarts += 1
        self._set_state(e, BACKOFF, f"{decision.reason}; restarting in {decision.delay_s * 1000:.0f} ms")
        if decision.delay_s <= 0:
            self._restart_now(e)
        else:
            self.after(decision.delay_s, self._restart_now, e)

    def _restart_now(self, e: Entry) -> None:
        if e.state != BACKOFF or not self.running or self.entries.get(e.name) is not e:
            return
        try:
            self._spawn(e)
        except Refusal as r:
            self._set_state(e, FAILED, str(r))

    def _forget(self, e: Entry) -> None:
        if self.entries.get(e.name) is e and not e.alive:
            del self.entries[e.name]

    def _boot_next(self) -> None:
        """Boot the manifest one entry at a time, each after what it uses is serving."""
        while self.boot_queue:
            if any(x.state == STARTING for x in self.entries.values() if x.kind != "client"):
                return
            spec = self.boot_queue.popleft()
            waiters = self.boot_waiters.pop(spec.name, [])
            try:
                if spec.name in self.entries:
                    raise Refusal("Conflict", f"a domain named {spec.name!r} appeared while it waited to boot")
                e = self._new_entry(spec)
                e.waiters.extend(waiters)
                self._spawn(e)
            except Refusal as r:
                log.error("cannot boot %s: %s", spec.name, r)
                for ident, rid in waiters:
                    self._send(ident, {"ok": False, "kind": r.kind, "error": str(r), "rid": rid})
            return

    def _answer_waiters(self, e: Entry, reply: dict | None) -> None:
        if reply is None:
            return
        waiters, e.waiters = e.waiters, []
        for ident, rid in waiters:
            self._send(ident, dict(reply, rid=rid))

    def _set_state(self, e: Entry, state: str, reason: str) -> None:
        if e.state != state or e.reason != reason:
            log.info("domain %s: %s -> %s (%s)", e.name, e.state, state, reason)
        e.state = state
        e.reason = reason
        self._publish("STATE", e)

    def _publish(self, event: str, e: Entry, **extra) -> None:
        msg = {"event": event, "name": e.name, "id": e.id, "state": e.state, "reason": e.reason,
               "ts": time.time(), **extra}
        try:
            self.pub.send_multipart([event.encode(), encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # ------------------------------------------------------------------ watchdog
    def _watchdog(self, now: float) -> None:
        for e in list(self.by_id.values()):
            if e.kind != "domain" or e.state not in (RUNNING, STARTING) or not e.pid:
                continue
            area = self.heap.runtime_area(e.id)
            hb = _U64.unpack_from(area, RA_HEARTBEAT)[0]
            if hb != e.heartbeat:
                e.heartbeat = hb
                e.heartbeat_at = now
                continue
            limit = e.spec.watchdog_s or self.manifest.watchdog_s
            if e.state == STARTING:
                limit = max(limit, 30.0)
            elif area[RA_BUSY]:
                # Inside a call: a long method is not a hang.  Its callers' deadlines
                # (RpcTimeout, then report_hang) bound it; this is the backstop.
                limit = max(limit * BUSY_WATCHDOG_FACTOR, 60.0)
            if now - e.heartbeat_at > limit:
                log.warning("watchdog: %s (pid %d) missed its heartbeat for %.1fs; killing it", e.name, e.pid, limit)
                e.hang_reported = True
                try:
                    os.kill(e.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                e.heartbeat_at = now

    # ------------------------------------------------------------------ channels
    def _open_channel(self, caller: Entry, callee: Entry) -> ChannelRec:
        import numpy as np

        size = chan.channel_size()
        rref = self.sheap.alloc_vec(np.uint8, size)
        buf = rref.buf
        chan.init_channel(buf, caller.id, callee.id)
        rec = ChannelRec(self.next_channel, caller.id, callee.id, rref, rref.offset, size, {caller.id, callee.id})
        self.next_channel += 1
        self.channels[rec.id] = rec
        return rec

    def _channel_between(self, caller: int, callee: int) -> ChannelRec | None:
        for rec in self.channels.values():
            if rec.caller == caller and rec.callee == callee:
                return rec
        return None

    def _drop_end(self, rec: ChannelRec, did: int) -> None:
        rec.ends.discard(did)
        if did == rec.caller and rec.callee in rec.ends:
            # in the channel itself, before the notice and before the closer's reply: a
            # callee asking Runtime.client_alive() gets the answer the caller saw
            chan.set_state(rec.buf, chan.CALLER_DEAD)
        other = rec.callee if did == rec.caller else rec.caller
        if other in rec.ends:
            e = self.by_id.get(other)
            if e is not None and e.ident is not None and other == rec.callee:
                self._send(e.ident, {"push": "channel_closed", "channel": rec.id, "peer": did})
        self._maybe_free_channel(rec)

    def _maybe_free_channel(self, rec: ChannelRec) -> None:
        if rec.ends or rec.deferred:
            return
        chan.set_state(rec.buf, chan.CLOSED)
        rec.rref.drop()
        del self.channels[rec.id]

    def _borrow_active(self, borrower: int, slot: int) -> bool:
        e = self.by_id.get(borrower)
        return e is not None and e.alive

    def _settle_deferred(self) -> None:
        for rec in list(self.channels.values()):
            if not rec.deferred:
                continue
            callee = self.by_id.get(rec.callee)
            buf = rec.buf
            done = _U64.unpack_from(buf, chan.REQ_SEQ)[0] == _U64.unpack_from(buf, chan.RESP_SEQ)[0]
            if done or callee is None or not callee.alive:
                for slot in rec.deferred:
                    self.heap.release_deferred(slot)
                rec.deferred.clear()
                self._maybe_free_channel(rec)

    def _ring(self, did: int) -> None:
        try:
            b = Bell(self.paths.bell(did))
        except OSError:
            return
        b.ring()
        b.close()

    def _dead_ids(self) -> list[int]:
        live = set(self.by_id) | {SUPERVISOR_ID}
        return [i for i in range(2, MAX_DOMAINS) if i not in live]

    def _export_owner(self, name: str, iface: str) -> Entry | None:
        for e in self.entries.values():
            if any(x["name"] == name and x["interface"] == iface for x in e.exports):
                return e
        return None

    # ------------------------------------------------------------------ pids
    def _record_pids(self) -> None:
        """Keep a list of every process the instance started, for stale cleanup."""
        lines = []
        if self.zygote_pid:
            lines.append(f"{self.zygote_pid} {stale.create_time(self.zygote_pid)}")
        for e in self.by_pid.values():
            if e.kind != "client" and e.pid:
                lines.append(f"{e.pid} {stale.create_time(e.pid)}")
        tmp = self.paths.pids.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.paths.pids)

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Stop every domain (grace period, then SIGKILL) and remove every file."""
        log.info("stopping instance %s", self.name)
        # Domains first (a driver's last act may be to quiesce its device), then the
        # devices; each group gets the grace period, then SIGKILL.
        pids: set = set()
        for group in ("domain", "device"):
            live = [e for e in self.entries.values() if e.kind == group and e.pid]
            for e in reversed(live):
                e.stop_requested = True
                try:
                    os.kill(e.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + STOP_GRACE_S
            pids |= {e.pid for e in live}
            while pids and time.monotonic() < deadline:
                try:
                    data = self.zsock.recv(1 << 16, socket_nonblock())
                    msg = msgpack.unpackb(data, raw=False) if data else {}
                    pids.discard(msg.get("exit"))
                except BlockingIOError:
                    time.sleep(0.005)
                except OSError:
                    break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.zygote_pid:
            try:
                os.kill(self.zygote_pid, signal.SIGKILL)
                os.waitpid(self.zygote_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        # The zygote is gone; its children got SIGKILL through PDEATHSIG.  Wait for them.
        for pid in pids:
            stale.wait_gone(pid, 2.0)
        for e in self.entries.values():
            if e.pidfd >= 0:
                os.close(e.pidfd)
        try:
            self.router.close(0)
            self.pub.close(0)
            self.ctx.term()
        except Exception:
            pass
        try:
            self.sheap.close()
            self.heap.close()
        except Exception:
            pass
        stale.remove_instance_files(self.paths)
        log.info("instance %s down", self.name)
        for h in log.handlers:
            h.close()
        log.handlers.clear()


def socket_nonblock() -> int:
    import socket

    return socket.MSG_DONTWAIT


def _describe_exit(code: int) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == 0:
        return "exited normally"
    if code == 70:
        return "panicked (undeclared exception), exit status 70"
    if code == 78:
        return "failed to initialise, exit status 78"
    return f"exited with status {code}"


def run(name: str, manifest: Manifest, foreground: bool = True, ready_fd: int | None = None) -> int:
    sup = Supervisor(name, manifest, foreground=foreground)

    def on_signal(signum, frame):
        sup.running = False

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        sup.prepare()
    except BaseException:
        stale.remove_instance_files(sup.paths)
        raise
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    sup.serve_forever()
    return 0
