"""The supervisor daemon: one instance's trusted core, composed of its concepts.

Owns: the instance's start-up (stale cleanup, runtime directory, token, heap,
zygote, endpoints), the wiring of the concepts below into one event loop, and the
teardown.  Calls every concept module, each of which says what it owns:

  loop.py       the poller and the timers           table.py     the domain table
  endpoints.py  control ROUTER and event PUB        zlink.py     requests to the zygote
  control.py    the command table and handlers      lifecycle.py spawn, death, restart, boot
  watchdog.py   hung-domain detection               channels.py  call channels, deferred borrows
  devices.py    device binding and quiesce          zygote.py    the fork server

Single-threaded on purpose: every state change happens in one place, in order, and
no lock is needed.  And no handler waits: deaths, zygote reports, control requests
and timers are all events, so any number of them at once, in any order, is handled
one after the other without the loop ever blocking.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time

from redleaf.domains.paths import InstancePaths

from . import stale
from .channels import Channels
from .control import Control
from .devices import Devices
from .endpoints import Endpoints
from .lifecycle import STOP_GRACE_S, Lifecycle
from .loop import Loop
from .manifest import Manifest
from .table import MAX_DOMAINS, SUPERVISOR_ID, Table
from .watchdog import Watchdog

TICK_S = 0.05  # the watchdog, deferred borrows and zygote deadlines run this often

log = logging.getLogger("redleaf.supervisor")


class Supervisor:
    def __init__(self, name: str, manifest: Manifest, *, foreground: bool = True):
        self.name = name
        self.manifest = manifest
        self.paths = InstancePaths(name)
        self.foreground = foreground
        self.table = Table()
        self.loop = Loop()
        self.zygote_pid = 0
        self._last_tick = 0.0

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        """Clean a stale instance of this name, then lay out the runtime dir and heap."""
        stale.clean_stale(self.name)
        # everything the supervisor creates from here (pid records, logs, the zmq
        # sockets, which follow the umask) is ours alone: 0600 files, 0700 dirs
        # (DESIGN §5a).  The zygote puts the user's umask back for the domains, so a
        # disk image a device creates gets the mode the user expects.
        self.user_umask = os.umask(0o077)
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
        self.sheap = Heap.open(str(self.paths.heap), SUPERVISOR_ID,
                               lease_fn=lambda kind, count: self.heap.lease(SUPERVISOR_ID, kind, count),
                               register_type_fn=self.heap.register_type)
        # The zygote must be forked before this process creates a zmq context.
        from .zygote import start_zygote

        self.zygote_pid, zsock = start_zygote(self.name, umask=self.user_umask)
        self.out = Endpoints(self.paths.control, self.paths.events)
        self.channels = Channels(self.table, self.heap, self.paths, self.out)
        self.devices = Devices(self.table, self.heap.mem, self.loop, self.channels.ring)
        self.life = Lifecycle(self, self.table, self.heap, self.loop, self.out, self.channels, self.devices, zsock)
        self.life.zygote_pid = self.zygote_pid
        self.life.record_pids()
        self.watchdog = Watchdog(self.table, self.heap, self.manifest.watchdog_s, self.life.kill_hung)
        self.watchdog.channels = self.channels
        self.control = Control(self, self.table, self.life, self.channels, self.devices, self.heap, self.loop,
                               self.out)
        self.life.death_hooks.append(self.control.domain_died)
        self.loop.add_reader(self.out.router, self.control.drain)
        self.loop.add_reader(self.life.zygote.fileno(), self.life.zygote.drain)
        self.loop.periodic.append(self._tick)
        self.life.boot_queue.extend(self.manifest.boot_order())
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
            self.life.boot_next()
            self.loop.run()
        finally:
            self.teardown()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_tick < TICK_S:
            return
        self._last_tick = now
        self.watchdog.check(now)
        self.channels.settle_deferred()
        self.channels.tick(now)
        self.life.zygote.check_deadlines()

    @property
    def running(self) -> bool:
        return self.loop.running

    def stop(self) -> None:
        self.loop.stop()

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Stop every domain (grace period, then SIGKILL) and remove every file.

        The loop has ended, so waiting here stalls nobody."""
        log.info("stopping instance %s", self.name)
        # Domains first (a driver's last act may be to quiesce its device), then the
        # devices; each group gets the grace period, then SIGKILL.
        entries = self.table.entries.values()
        left: set = set()
        for group in ("domain", "device"):
            live = [e for e in entries if e.kind == group and e.pid]
            for e in reversed(live):
                e.stop_requested = True
                try:
                    os.kill(e.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            pids = {e.pid for e in live}
            deadline = time.monotonic() + STOP_GRACE_S
            while pids and time.monotonic() < deadline:
                try:
                    msg = self.life.zygote.recv_nowait()
                except EOFError:
                    break
                if msg is None:
                    time.sleep(0.005)
                elif "exit" in msg:
                    pids.discard(msg["exit"])  # the zygote killed its group as it reaped it
            left |= pids
        # Still unreaped, so each group id is still theirs: kill what they forked too.
        for pid in left | set(self.life.probe_pids):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.zygote_pid:
            try:
                os.kill(self.zygote_pid, signal.SIGKILL)
                os.waitpid(self.zygote_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for pid in left:
            stale.wait_gone(pid, 2.0)
        for e in entries:
            if e.pidfd >= 0:
                os.close(e.pidfd)
        self.out.close()
        self.channels.close_all()
        try:
            self.sheap.close()
            self.heap.close()
        except Exception as ex:  # the files go next anyway
            log.warning("closing the heap failed: %s", ex)
        stale.remove_instance_files(self.paths)
        log.info("instance %s down", self.name)
        for h in log.handlers:
            h.close()
        log.handlers.clear()


def run(name: str, manifest: Manifest, foreground: bool = True, ready_fd: int | None = None) -> int:
    sup = Supervisor(name, manifest, foreground=foreground)
    from .zygote import set_instance, set_title

    set_instance(name)
    set_title("supervisor")

    def on_signal(signum, frame):
        sup.stop()

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
