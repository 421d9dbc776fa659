"""The process table: pids, parents and children, exit status and wait.

Owns: every process's kernel record (`Proc`: pid, parent, state, status, name, cwd,
descriptors, the domain that runs it, its console) and the rules of exit and wait.
Calls errors.py and file.py (a new process's empty descriptor table). Pure: the kernel
domain decides when a process has exited (its exit call, or the supervisor's notice
that its domain died) and what to release; this says who becomes whose.

States are RUNNING and ZOMBIE (exited, not yet waited for). Waiting is a state machine
without waiting: `wait` returns (pid, status) for a zombie child, WOULD_BLOCK while a
matching child still runs, and raises ECHILD if there is none. An exiting process's
children go to init (pid 1); init reaps its zombies at once (xv6's init loops on wait
for that), so orphans never pile up.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from .errors import WOULD_BLOCK, Rv6Error
from .file import FdTable, FileTable

RUNNING, ZOMBIE = "running", "zombie"
INIT_PID = 1
NPROC = 1024
#: exit status of a process killed (128 + SIGKILL, as a POSIX shell reports it)
KILLED_STATUS = 137


@dataclass(eq=False)
class Proc:
    pid: int
    ppid: int
    name: str
    fds: FdTable
    cwd: str = "/"
    state: str = RUNNING
    status: int = 0
    children: set = field(default_factory=set)
    domain: int | None = None  # the domain id that runs it (None: init, or a terminal's session)
    console: object = None  # the Console its /dev/console opens (inherited at spawn)
    killed: bool = False
    session: bool = False  # an attached terminal's stand-in process (see kernel_domain)


class ProcTable:
    def __init__(self, files: FileTable, limit: int = NPROC):
        self.files = files
        self.limit = limit
        self.procs: dict[int, Proc] = {}
        self.next_pid = INIT_PID
        self.init = self._new(0, "init")

    def _new(self, ppid: int, name: str) -> Proc:
        if len(self.procs) >= self.limit:
            raise Rv6Error(errno.EAGAIN, f"the process table is full ({self.limit} processes)")
        while self.next_pid in self.procs:
            self.next_pid += 1
        p = Proc(self.next_pid, ppid, name, FdTable(self.files))
        self.next_pid += 1
        self.procs[p.pid] = p
        return p

    def get(self, pid) -> Proc:
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise Rv6Error(errno.EINVAL, f"a pid is an int, not {type(pid).__name__}")
        p = self.procs.get(pid)
        if p is None:
            raise Rv6Error(errno.ESRCH, f"no process {pid}")
        return p

    def alloc(self, parent: Proc, name: str) -> Proc:
        """A new RUNNING child of `parent` (descriptors empty, cwd and console inherited)."""
        if parent.state != RUNNING:
            raise Rv6Error(errno.ESRCH, f"process {parent.pid} has exited")
        p = self._new(parent.pid, name)
        p.cwd = parent.cwd
        p.console = parent.console
        parent.children.add(p.pid)
        return p

    def exit(self, p: Proc, status: int) -> list:
        """Make a running process a zombie with `status`; its children go to init.
        Returns the files whose last reference it held (the caller releases them).
        A second exit of the same process (its exit call, then its domain's death) is
        a no-op: the first status stands."""
        if p.pid == INIT_PID:
            raise Rv6Error(errno.EPERM, "init does not exit")
        if p.state != RUNNING:
            return []
        p.state = ZOMBIE
        p.status = status
        released = p.fds.close_all()
        for cpid in sorted(p.children):
            c = self.procs[cpid]
            c.ppid = INIT_PID
            self.init.children.add(cpid)
        p.children.clear()
        self._reap_init_zombies()
        return released

    def abandon(self, p: Proc) -> list:
        """Remove a process that never ran (its start failed) without a zombie; the
        files whose last reference it held."""
        if p.state != RUNNING or p.children:
            raise AssertionError("only a fresh process is abandoned")
        released = p.fds.close_all()
        self._remove(p.pid)
        return released

    def _reap_init_zombies(self) -> None:
        for cpid in list(self.init.children):
            if self.procs[cpid].state == ZOMBIE:
                self._remove(cpid)

    def _remove(self, pid: int) -> None:
        p = self.procs.pop(pid)
        parent = self.procs.get(p.ppid)
        if parent is not None:
            parent.children.discard(pid)

    def wait(self, p: Proc, pid: int = -1):
        """(pid, status) of a zombie child (which is then gone), WOULD_BLOCK while the
        matching children all run; ECHILD when there is no matching child."""
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise Rv6Error(errno.EINVAL, f"a pid is an int, not {type(pid).__name__}")
        if pid == -1:
            candidates = sorted(p.children)
        elif pid in p.children:
            candidates = [pid]
        else:
            candidates = []
        if not candidates:
            what = "children" if pid == -1 else f"child {pid}"
            raise Rv6Error(errno.ECHILD, f"process {p.pid} has no {what} to wait for")
        for cpid in candidates:
            c = self.procs[cpid]
            if c.state == ZOMBIE:
                self._remove(cpid)
                return cpid, c.status
        return WOULD_BLOCK

    def by_domain(self, domain_id: int) -> Proc | None:
        for p in self.procs.values():
            if p.domain == domain_id and p.state == RUNNING:
                return p
        return None

    def running(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.state == RUNNING]
