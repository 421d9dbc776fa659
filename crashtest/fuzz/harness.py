"""Running a fuzzer against a live instance: the part every instance-driven target shares.

Owns: starting and stopping the instance around a fuzz run (what it leaves behind is a
crash), and the drive loop that feeds inputs while watching an innocent domain (its pid
and state must not change, its calls must keep answering), and the heap check after. Calls: supervisor.instance, domains.errors, and the Tally it is given.
"""

from __future__ import annotations

from typing import Callable

from .tally import Tally


def on_instance(target: str, manifest: str, count: int, seed: int,
                fuzz: Callable[..., Tally]) -> dict:
    """Start an instance from `manifest`, run fuzz(inst, count, seed, tally), stop it;
    the report. Anything the instance leaves behind (a process, a /dev/shm file, a
    socket) is a crash."""
    from redleaf.supervisor.instance import Instance

    tally = Tally(target, seed)
    inst = Instance(manifest).start()
    try:
        fuzz(inst, count, seed, tally)
    finally:
        inst.stop()
        left = inst.leftovers()
        inst.cleanup_log()
    if left:
        tally.crash(f"the instance left things behind: {left}", counted=False)
    return tally.result()


def drive(inst, tally: Tally, count: int, one: Callable[[], None], watched: str, every: int) -> None:
    """one() `count` times; the domain `watched` is the innocent one: a call to it that
    fails (RpcError from one()) or a change of its pid or state (looked at every `every`
    inputs and at the end) is a crash and ends the run."""
    from redleaf.domains.errors import RpcError

    pid = inst.status()[watched]["pid"]
    for i in range(count):
        try:
            one()
        except RpcError as e:   # the watched domain is gone (restarting, failed): it died
            tally.crash(f"{watched} became unreachable: {type(e).__name__}: {e}")
            break
        if (i + 1) % every == 0 or i + 1 == count:
            row = inst.status()[watched]
            if (row["pid"], row["state"]) != (pid, "running"):
                tally.crash(f"{watched} was pid {pid}; now {row['pid']} {row['state']}", counted=False)
                break


def check_heap(inst, tally: Tally) -> None:
    """`heap --check` after the run (its clients detached): a violation is a crash."""
    v = inst.request("heap", check=True)["violations"]
    if v:
        tally.crash(f"heap --check: {v}", counted=False)
