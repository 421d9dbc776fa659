"""Linux network namespaces for the tap wire: create one with ``ip netns add``, run a
command inside it, delete it.

Owns: the namespace's life (NetNamespace) and the ``ip`` command runner (run_ip).
Calls: only the ``ip`` program (iproute2) through subprocess; imports nothing of ours.
Raises WireUnavailable (defined here, the lowest layer that can find it out) when the
host cannot provide what is asked (no root, no iproute2).
"""
from __future__ import annotations

import os
import shutil
import subprocess


class WireUnavailable(RuntimeError):
    """The backend cannot be created here (permissions, missing device...)."""


def run_ip(*args: str) -> None:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    r = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise WireUnavailable(f"`ip {' '.join(args)}` failed: {r.stderr.strip()} "
                              "(needs root or CAP_NET_ADMIN and iproute2)")


class NetNamespace:
    """A network namespace created with ``ip netns add`` and removed by close()."""

    def __init__(self, name: str):
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("bad namespace name")
        if os.geteuid() != 0:
            raise WireUnavailable("creating a network namespace needs root (or CAP_SYS_ADMIN "
                                  "and CAP_NET_ADMIN); run as root or use another wire")
        if not shutil.which("ip") and not os.path.exists("/usr/sbin/ip"):
            raise WireUnavailable("the `ip` command (iproute2) is needed for the tap wire")
        self.name = name
        run_ip("netns", "add", name)
        self.closed = False

    def exec(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
        ip = shutil.which("ip") or "/usr/sbin/ip"
        return subprocess.run([ip, "netns", "exec", self.name, *cmd],
                              capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            ip = shutil.which("ip") or "/usr/sbin/ip"
            subprocess.run([ip, "netns", "del", self.name], capture_output=True, timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
