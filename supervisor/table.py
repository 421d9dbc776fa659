"""The domain table: one entry per domain, device or attached client, and its states.

States (DESIGN §3): starting -> running; stopping -> stopped; on death: crashed ->
backoff -> starting, or failed, or stopped.  Transitions are logged with a reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .manifest import DomainSpec
from .policy import RestartTracker

STARTING, RUNNING, STOPPING, STOPPED, CRASHED, BACKOFF, FAILED = (
    "starting", "running", "stopping", "stopped", "crashed", "backoff", "failed")
LIVE_STATES = (STARTING, RUNNING, STOPPING)


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
    exports: list = field(default_factory=list)
    waiters: list = field(default_factory=list)  # (ident, rid) awaiting running/failed
    stop_requested: bool = False
    restart_at: float = 0.0
    heartbeat: int = 0
    heartbeat_at: float = 0.0
    pidfd: int = -1
    init_error: str = ""
    exit_code: int | None = None
    psutil_proc: object = None
    restart_requested: bool = False
    hang_reported: bool = False
    device: dict | None = None  # for devices: BAR location and quiesce module
    bound_devices: list = field(default_factory=list)  # for drivers: devices they program

    @property
    def alive(self) -> bool:
        return self.state in LIVE_STATES and self.pid > 0

    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.state == RUNNING else 0.0
