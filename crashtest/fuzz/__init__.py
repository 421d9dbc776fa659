"""Fuzzers of every input boundary (issue 18, part 2), one module a target.

Each target module exposes `run(count: int, seed: int) -> dict` (the report: target,
inputs, crashes, refused, accepted, unclear, errors, findings; see tally.Tally), drives
its boundary with `random.Random(seed)` so a run is reproducible, and is the same code
its hypothesis tests in tests/crashtest/fuzz/ drive.  `redleaf crashtest --fuzz TARGET`
imports `redleaf.crashtest.fuzz.<module>`; TARGETS maps the CLI's names (which may hold
a '-') to module names.

May call: supervisor (to start an instance), domains, shared_heap, drivers, rv6.
"""

#: CLI target name -> module of this package
TARGETS = {
    "control": "control",
    "rref": "rref",
    "channel": "channel",
    "deque": "deque",
    "manifest": "manifest",
    "fsimage": "fsimage",
    "fscalls": "fscalls",
    "nvme-regs": "nvme_regs",
    "ixgbe-regs": "ixgbe_regs",
    "frames": "frames",
    "access": "access",
}


def module_for(target: str) -> str:
    """The import path of a target's module; KeyError names the known targets."""
    try:
        return f"{__name__}.{TARGETS[target]}"
    except KeyError:
        raise KeyError(f"no fuzz target {target!r}; known: {', '.join(sorted(TARGETS))}") from None
