"""The extra attached clients of a campaign (`--clients N`): starting them, knowing
them by the name the supervisor gives them (`client-<pid>`), parking them while the
campaign checks, replacing one that a fault ended, and ending them all.

Each is a process running crashtest/client_proc.py, spoken to by lines on its stdin
and stdout; a reader thread per client collects its lines.  Only the campaign's
extra clients are ever targets: the workload's own client (a thread of the
campaign's process) is not one of them.

May call: crashtest.client_proc (as a subprocess).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

#: how long a new client may take to attach and look echo up
READY_S = 30.0
#: how long a client may take to reach its next round and park
PARK_S = 10.0


class ClientError(RuntimeError):
    """An extra client did not start or did not answer (the message says which and how)."""


class ExtraClient:
    def __init__(self, instance: str, echo: str, errfile):
        # its stderr goes to a file of the campaign's directory: what a client that
        # failed to start said is in the error the campaign reports
        self.errfile = errfile
        self.proc = subprocess.Popen([sys.executable, "-m", "redleaf.crashtest.client_proc", instance, echo,
                                      str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, bufsize=0)
        self.pid = self.proc.pid
        self.name = f"client-{self.pid}"  # what the supervisor calls an attached process
        self.domain_id: int | None = None
        self.problems: list[str] = []
        self.ready = threading.Event()
        self.parked = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"crashtest-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            word, _, rest = line.partition(" ")
            if word == "ready":
                self.domain_id = int(rest)
                self.ready.set()
            elif word == "parked":
                self.parked.set()
            elif word == "problem":
                self.problems.append(f"{self.name}: {rest}")

    def send(self, cmd: str) -> bool:
        try:
            self.proc.stdin.write(cmd.encode() + b"\n")
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False  # it is dead (a fault), or being ended

    def alive(self) -> bool:
        return self.proc.poll() is None

    def end(self, timeout: float = 5.0) -> None:
        """Close its stdin (it detaches and exits); kill it if it does not."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            os.kill(self.pid, signal.SIGCONT)  # a stopped client cannot read its EOF
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(2.0)
        self.proc.stdout.close()
        self.errfile.close()

    def stderr_tail(self) -> str:
        try:
            with open(self.errfile.name, errors="replace") as fh:
                lines = [x for x in fh.read().splitlines() if x.strip()]
            return lines[-1] if lines else ""
        except OSError:
            return ""


class ClientPool:
    def __init__(self, instance: str, echo: str, logdir: str):
        self.instance, self.echo, self.logdir = instance, echo, logdir
        self.clients: dict[str, ExtraClient] = {}  # by supervisor name
        self.problems: list[str] = []  # of clients that are gone
        self.started = 0

    def start(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            out.append(self.start_one())
        return out

    def start_one(self) -> str:
        self.started += 1
        err = open(os.path.join(self.logdir, f"client-{self.started}.err"), "wb")
        c = ExtraClient(self.instance, self.echo, err)
        self.clients[c.name] = c
        deadline = time.monotonic() + READY_S
        while not c.ready.wait(0.05):
            if not c.alive():
                raise ClientError(f"an extra client (pid {c.pid}) exited with {c.proc.returncode} before it "
                                  f"attached to {self.instance} and looked up {self.echo!r}: {c.stderr_tail()}")
            if time.monotonic() > deadline:
                raise ClientError(f"an extra client (pid {c.pid}) did not attach within {READY_S:g}s")
        return c.name

    def names(self) -> set[str]:
        return set(self.clients)

    def get(self, name: str) -> ExtraClient | None:
        return self.clients.get(name)

    def replace(self, name: str) -> str:
        """The client `name` was ended by a fault: forget it (reaping it) and start another."""
        c = self.clients.pop(name)
        c.end(timeout=1.0)
        self.problems += c.problems
        return self.start_one()

    def park(self) -> list[str]:
        """Hold every client at its next round; the names of those that did not park
        (dead or stopped ones are not waited for: nothing of theirs moves)."""
        waiting = []
        for c in self.clients.values():
            c.parked.clear()
            if c.alive() and c.send("p"):
                waiting.append(c)
        deadline = time.monotonic() + PARK_S
        late = []
        for c in waiting:
            while not c.parked.wait(0.05):
                if not c.alive() or _stopped(c.pid):
                    break
                if time.monotonic() > deadline:
                    late.append(c.name)
                    break
        return late

    def resume(self) -> None:
        for c in self.clients.values():
            c.send("r")

    def take_problems(self) -> list[str]:
        out = self.problems
        self.problems = []
        for c in self.clients.values():
            out += c.problems
            c.problems = []
        return out

    def end(self) -> None:
        for c in list(self.clients.values()):
            c.end()
            self.problems += c.problems
        self.clients.clear()


def _stopped(pid: int) -> bool:
    """Is the process stopped (SIGSTOP): state T in /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False
