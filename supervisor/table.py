"""The domain table: one entry per domain, device or attached client, its states,
and the id/pid indexes over them.

Owns: `Entry` (the supervisor's record of one domain) and `Table` (name, id, pid and
credential indexes and the pool of free domain ids).  The table is the authority on
who is alive and what is whose: no decision about liveness or reclaim reads bytes a
domain can write (DESIGN §5a).

Credentials: every id handed out comes with a fresh credential (32 random bytes),
the only thing that lets a control message speak for that domain; it is revoked
when the id is released, so a restarted domain (same name, maybe the same id) gets a
new one and whatever held the old one speaks for nobody.  Calls nothing of ours but the manifest
and policy data types; every other supervisor module reads and writes it.

States (DESIGN §3): starting -> running; stopping -> stopped; on death: crashed ->
backoff -> starting, or failed, or stopped.  Transitions are logged with a reason.
A start is a state, not a wait: `starting` with `spawn_req` set means the zygote has
not yet answered the spawn request of that id; `dying` means the death sequence has
begun but not finished (e.g. a device quiesce is pending), so the entry's id is
still held.
"""

from __future__ import annotations

import collections
import secrets
import time
from dataclasses import dataclass, field

from .manifest import MAX_DOMAINS, DomainSpec
from .policy import RestartTracker

STARTING, RUNNING, STOPPING, STOPPED, CRASHED, BACKOFF, FAILED = (
    "starting", "running", "stopping", "stopped", "crashed", "backoff", "failed")
LIVE_STATES = (STARTING, RUNNING, STOPPING)
SUPERVISOR_ID = 1


class Refusal(Exception):
    """A request refused with an error reply: `kind` names the error type the client
    sees, the message tells the user what to do."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Entry:
    name: str
    kind: str  # "domain" | "device" | "client"
    spec: DomainSpec | None
    tracker: RestartTracker | None
    id: int = 0
    pid: int = 0
    state: str = STOPPED
    reason: str = ""
    restarts: int = 0
    started_at: float = 0.0
    ready_at: float = 0.0
    ident: bytes | None = None  # zmq identity of its control socket
    cred: bytes = b""  # its domain credential (see the module docstring)
    exports: list = field(default_factory=list)
    waiters: list = field(default_factory=list)  # (ident, rid) awaiting running/failed
    stop_requested: bool = False
    heartbeat: int = 0
    heartbeat_at: float = 0.0
    pidfd: int = -1
    init_error: str = ""
    exit_code: int | None = None
    psutil_proc: object = None
    restart_requested: bool = False
    hang_reported: bool = False
    kill_reason: str | None = None  # why the supervisor killed it, for its death notice
    device: dict | None = None  # for devices: where its BAR and shell are in the heap
    bound_devices: list = field(default_factory=list)  # for drivers: devices they program
    spawn_req: int = 0  # the zygote request this start waits for (0: none pending)
    dying: bool = False  # the death sequence has begun and not yet finished
    load_waiters: list = field(default_factory=list)  # (ident, rid) of a `load` not yet answered
    hello: tuple | None = None  # (ident, rid, pid) of a hello that came before the "spawned" report
    load_partner: str | None = None  # a shadowed load's driver: the shadow whose load it serves
    #: a spawned child's parent: the spawner's entry and the id of the incarnation that
    #: spawned it (a restarted spawner is not told of its predecessor's children)
    spawner: "Entry | None" = None
    spawner_id: int = 0

    @property
    def alive(self) -> bool:
        """Has (or is about to have) a process: a start in flight counts."""
        return self.state in LIVE_STATES and (self.pid > 0 or self.spawn_req > 0)

    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.state == RUNNING else 0.0


class Table:
    """Entries by name, by domain id and by pid, and the free domain ids."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}
        self.by_id: dict[int, Entry] = {}
        self.by_pid: dict[int, Entry] = {}
        self.by_cred: dict[bytes, Entry] = {}
        self.free_ids = collections.deque(range(SUPERVISOR_ID + 1, MAX_DOMAINS))

    def assign_id(self, e: Entry) -> None:
        if not self.free_ids:
            raise Refusal("Exhausted", f"all {MAX_DOMAINS} domain slots are in use; unload a domain first")
        e.id = self.free_ids.popleft()
        self.by_id[e.id] = e
        self.by_cred.pop(e.cred, None)
        e.cred = secrets.token_bytes(32)
        self.by_cred[e.cred] = e

    def release_id(self, e: Entry) -> None:
        if e.id and self.by_id.get(e.id) is e:
            del self.by_id[e.id]
            self.free_ids.append(e.id)
        if self.by_cred.get(e.cred) is e:
            del self.by_cred[e.cred]
        e.cred = b""
        e.id = 0

    def sender(self, cred) -> Entry | None:
        """The entry a credential names, or None (unknown, revoked, or not bytes)."""
        if not isinstance(cred, bytes) or len(cred) != 32:
            return None
        return self.by_cred.get(cred)

    def forget(self, e: Entry) -> None:
        """Drop an entry that has no process and holds no id."""
        if self.entries.get(e.name) is e and not e.alive and not e.dying and not e.id:
            del self.entries[e.name]

    def dead_ids(self) -> list[int]:
        live = set(self.by_id) | {SUPERVISOR_ID}
        return [i for i in range(SUPERVISOR_ID + 1, MAX_DOMAINS) if i not in live]

    def export_owner(self, name: str, iface: str) -> Entry | None:
        for e in self.entries.values():
            if any(x["name"] == name and x["interface"] == iface for x in e.exports):
                return e
        return None
