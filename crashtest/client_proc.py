"""An extra attached client for a campaign (`--clients N`): a process of its own that
attaches to the instance, keeps a few objects in the exchange heap, and calls Echo in
a loop, so that a fault can hit an attached client (SIGKILL, SIGSEGV, SIGSTOP) and the
campaign can check that its objects and channels went with it and that the domains
it called were not disturbed.

    python -m redleaf.crashtest.client_proc INSTANCE ECHO_NAME [PARENT_PID]

(with PARENT_PID it dies with that process, the campaign's.)

Lines on stdin and stdout (clients.py is the other end):
  out `ready <domain id>`   attached, echo looked up: a target from now on
  in  `p`  /  out `parked`  hold between rounds (the campaign checks the heap: nothing
                            of ours moves in the ownership table while it reads it)
  in  `r`                   go on
  out `problem <text>`      a data check failed (a violation)
  stdin closed              detach and exit 0
An RPC error (echo itself was hit) is counted, not fatal: the next round looks echo up
again through the same proxy.

May call: domains (attach, Echo, errors), shared_heap (through the client's heap).
"""

from __future__ import annotations

import os
import select
import sys
import time

#: heap objects the client keeps alive at once (the oldest dropped as new ones come)
HELD = 8
VEC = 256
ERROR_PAUSE_S = 0.005
#: between rounds: a client is background traffic, not a load test (two cores are shared)
ROUND_PAUSE_S = 0.001


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _commands(timeout: float) -> list[str] | None:
    """Lines waiting on stdin (None: it closed)."""
    r, _, _ = select.select([sys.stdin], [], [], timeout)
    if not r:
        return []
    data = os.read(sys.stdin.fileno(), 4096)
    if not data:
        return None
    return data.decode().split()


def _held(cmds: list[str], held: bool = False) -> bool:
    """After these commands in order, is the client to be parked?  (A client that was
    stopped reads a `p` and its `r` together: it must not wait for another `r`.)"""
    for c in cmds:
        if c in ("p", "r"):
            held = c == "p"
    return held


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the campaign's process dies, however it dies (PR_SET_PDEATHSIG):
    a client must not outlive the campaign that started it."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    import numpy as np

    from redleaf.domains import attach
    from redleaf.domains.builtin.echo import Echo
    from redleaf.domains.errors import RpcError

    instance, echo_name = argv[0], argv[1]
    if len(argv) > 2:
        _die_with_parent(int(argv[2]))
    with attach(instance) as d:
        e = d.lookup(echo_name, Echo)
        _say(f"ready {d.domain_id}")
        held = []
        i = 0
        while True:
            cmds = _commands(0)
            if cmds is None:
                break
            if _held(cmds):
                _say("parked")
                while True:  # until `r` (or stdin closes)
                    more = _commands(1.0)
                    if more is None:
                        return 0
                    if more and not _held(more, True):
                        break
            i += 1
            v = d.heap.alloc_vec(np.uint8, VEC)
            v.np[:] = i % 251
            want = int(v.np.sum(dtype=np.uint64))
            try:
                got = e.checksum(v)
                if got != want:
                    _say(f"problem Echo.checksum of round {i} returned {got}, expected {want}")
                if e.inc(i) != i + 1:
                    _say(f"problem Echo.inc({i}) returned a wrong value")
            except RpcError:
                time.sleep(ERROR_PAUSE_S)
            held.append(v)
            if len(held) > HELD:
                held.pop(0).drop()
            time.sleep(ROUND_PAUSE_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
