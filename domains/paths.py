"""Where an instance keeps its files.

Every instance has one runtime directory (mode 0700) holding the control and event
sockets, the instance token, doorbell FIFOs, pid records and logs; and one exchange
heap file under /dev/shm.  Both names derive from the instance name and the uid so
that two users, or two instances, never collide.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def check_instance_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"bad instance name {name!r}: use 1-32 characters of letters, digits, '_', '.', '-'"
        )
    return name


class RuntimeDirUnsafe(PermissionError):
    """The runtime directory is not ours alone (another owner, group/other access, a
    symlink): it is refused, as tmux and ssh-agent refuse theirs, since whoever controls
    it could plant sockets, tokens or pid records for us to trust."""


def check_private_dir(path: Path) -> bool:
    """True if `path` is a directory only we can use; False if it does not exist; raises
    RuntimeDirUnsafe otherwise. lstat, so a symlink is never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        why = "is not a directory"
    elif st.st_uid != os.getuid():
        why = f"belongs to uid {st.st_uid}, not to us (uid {os.getuid()})"
    elif st.st_mode & 0o077:
        why = f"has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700"
    if why:
        raise RuntimeDirUnsafe(f"refusing the runtime directory {path}: it {why}. Someone else may "
                               f"control it; remove it (or set REDLEAF_RUNTIME_DIR to a private one)")
    return True


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
        """The instance's directory, checked (with its parent) to be ours alone whenever
        it exists: every use of a socket, token or record in it comes through here."""
        base = runtime_root()
        root = base / check_instance_name(self.name)
        check_private_dir(base)
        check_private_dir(root)
        return root

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
        token = self.token   # checks the directory: RuntimeDirUnsafe goes to the caller as it is
        try:
            return token.read_bytes()
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
