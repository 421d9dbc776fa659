"""Finding and removing what a dead instance left behind.

If a supervisor is killed, its zygote and domains die with it (PDEATHSIG), but its
runtime directory and heap file remain, and so does anything a domain forked (a
grandchild has no PDEATHSIG).  The next `redleaf up` of that name, or `redleaf down`,
calls `clean_stale`: it kills any recorded process still alive, every member of a
recorded domain's process group started after that domain (each domain leads its own
group), and removes the files.  A record is only a claim: a process is killed only if
its pid *and* start time match (a recycled pid is never hit), it runs as us, and (for a
recorded process) its command line is one of ours, so a record planted to point at
another program is ignored. The directory itself has been checked to be ours alone
(InstancePaths.root).

Owns: the instance's leftovers.  Calls psutil and domains.paths only.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import psutil

from redleaf.domains.paths import InstancePaths


class InstanceRunning(RuntimeError):
    pass


def create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _recorded(line: str) -> tuple[int, float] | None:
    parts = line.split()
    if len(parts) != 2:
        return None
    try:
        return int(parts[0]), float(parts[1])
    except ValueError:
        return None


def _same_process(pid: int, ctime: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - ctime) < 0.01
    except psutil.Error:
        return False


def _is_ours(pid: int) -> bool:
    """Runs as our uid and is a redleaf process: the supervisor's command line names
    redleaf (the `redleaf` script or `-m redleaf.supervisor.cli`), and the zygote, domains
    and devices it forks keep it, or carry a `redleaf:` process title."""
    try:
        p = psutil.Process(pid)
        if p.uids().real != os.getuid():
            return False
        return any("redleaf" in part for part in p.cmdline())
    except psutil.Error:
        return False


def supervisor_alive(paths: InstancePaths) -> int:
    """The pid of the live supervisor of this instance, or 0."""
    try:
        rec = _recorded(paths.supervisor_pid.read_text().strip())
    except OSError:
        return 0
    if rec and _same_process(*rec) and _is_ours(rec[0]):
        return rec[0]
    return 0


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p = psutil.Process(pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.005)
    return False


def kill_group_members(pgid: int, since: float) -> list[int]:
    """SIGKILL every process of group `pgid` created at or after `since` (a group
    whose leader is gone; the start time keeps a reused id's new group safe)."""
    killed = []
    for p in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(p.pid) != pgid or p.info["create_time"] + 0.01 < since:
                continue
            if p.uids().real != os.getuid():
                continue
            os.kill(p.pid, signal.SIGKILL)
            killed.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return killed


def clean_stale(name: str) -> bool:
    """Remove a dead instance's leftovers.  Raises InstanceRunning if it is alive."""
    paths = InstancePaths(name)
    pid = supervisor_alive(paths)
    if pid:
        raise InstanceRunning(f"instance {name!r} is already running (supervisor pid {pid}); "
                              f"stop it with `redleaf down --name {name}`")
    found = paths.root.exists() or paths.heap.exists()
    try:
        lines = paths.pids.read_text().splitlines()
    except OSError:
        lines = []
    victims = []
    for line in lines:
        rec = _recorded(line)
        if not rec:
            continue
        if _same_process(*rec) and _is_ours(rec[0]):
            try:
                os.kill(rec[0], signal.SIGKILL)
                victims.append(rec[0])
            except ProcessLookupError:
                pass
        if rec[1]:
            victims += kill_group_members(*rec)
    for v in victims:
        wait_gone(v, 2.0)
    remove_instance_files(paths)
    return found


def remove_instance_files(paths: InstancePaths) -> None:
    try:
        os.unlink(paths.heap)
    except FileNotFoundError:
        pass
    shutil.rmtree(paths.root, ignore_errors=True)
    try:  # the per-user runtime dir, once no instance is left in it
        os.rmdir(paths.root.parent)
    except OSError:
        pass  # another instance lives there (or it is gone already)
