"""Where an instance keeps its files.

Every instance has one runtime directory (mode 0700) holding the control and event
sockets, the instance token, doorbell FIFOs, pid records and logs; and one exchange
heap file under /dev/shm.  Both names derive from the instance name and the uid so
that two users, or two instances, never collide.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def check_instance_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"bad instance name {name!r}: use 1-32 characters of letters, digits, '_', '.', '-'"
        )
    return name


def runtime_root() -> Path:
    base = os.environ.get("REDLEAF_RUNTIME_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"redleaf-{os.getuid()}"


@dataclass(frozen=True)
class InstancePaths:
    name: str

    @property
    def root(self) -> Path:
        return runtime_root() / check_instance_name(self.name)

    @property
    def control(self) -> str:
        return f"ipc://{self.root / 'control'}"

    @property
    def events(self) -> str:
        return f"ipc://{self.root / 'events'}"

    @property
    def token(self) -> Path:
        return self.root / "token"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def pids(self) -> Path:
        """Pids of every process the instance started, for stale-instance cleanup."""
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def heap(self) -> Path:
        return Path("/dev/shm") / f"redleaf-{os.getuid()}-{self.name}.heap"

    def bell(self, domain_id: int) -> Path:
        return self.root / f"bell-{domain_id}"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def read_token(self) -> bytes:
        try:
            return self.token.read_bytes()
        except FileNotFoundError:
            from .errors import InstanceNotRunning

            raise InstanceNotRunning(
                f"no redleaf instance {self.name!r} is running (start one with `redleaf up --name {self.name}`)"
            ) from None
        except PermissionError:
            from .errors import InstanceNotRunning

            raise InstanceNotRunning(
                f"cannot read the token of instance {self.name!r}: it belongs to another user"
            ) from None
