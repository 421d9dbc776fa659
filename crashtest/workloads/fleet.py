"""`fleet`: the echo rounds against four Echo domains in both placements at once.

`echo0` and `echo1` are processes of their own; `echo2` and `echo3` are co-located in
one group host (`group = "pair"`, language isolation).  Each round makes the `echo`
workload's three checked calls (a lent vector's checksum, a moved vector's round
trip, an `inc`) on one domain, the next round on the next, so a fault at any of them
meets calls in flight and the soak covers the group's own fault semantics.

An outage error (DomainCrashed, DomainUnavailable, RpcTimeout) is expected from a
call to a domain only when that domain's *process* was hit: the domain itself, or,
for a member of the group, its sibling (a kill -9 or a segfault of the shared
process ends both; a panic ends one, and then an error from the other is a broken
isolation and reported).  Several targets a wave, the `simultaneous` schedule, is
what makes this the fast workload behind `--preset soak`.

May call: domains (attach, Echo, errors), shared_heap, crashtest.workloads.echo.
"""

from __future__ import annotations

import threading

from .base import OUTAGE_ERRORS, Recorder, Workload
from .echo import PAUSE_AFTER_ERROR_S, echo_round

APART = ("echo0", "echo1")
GROUP = ("echo2", "echo3")

_ENTRY = """
[[domain]]
name = "{name}"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.005
backoff_max_s = 0.05
"""

MANIFEST = """
[heap]
size = "32MiB"
records = 16384

[supervisor]
watchdog_s = 2.0
""" + "".join(_ENTRY.format(name=n) for n in APART) + "".join(
    _ENTRY.format(name=n) + 'group = "pair"\n' for n in GROUP)


def process_of(name: str) -> tuple[str, ...]:
    """The domains sharing `name`'s process (itself alone, or its whole group)."""
    return GROUP if name in GROUP else (name,)


class FleetWorkload(Workload):
    name = "fleet"
    targets = "echo*"
    methods = {n: ("checksum", "roundtrip", "inc") for n in APART + GROUP}
    deadline_s = 10.0  # Echo's interface deadline

    def manifest(self) -> str:
        return MANIFEST

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        callee = what.split(".", 1)[0]
        return kind in OUTAGE_ERRORS and any(n in targets for n in process_of(callee))

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        import time

        from redleaf.domains import attach
        from redleaf.domains.builtin.echo import Echo

        names = APART + GROUP
        with attach(instance) as d:
            proxies = [d.lookup(n, Echo) for n in names]
            i = 0
            while not stop.is_set():
                self.gate()
                i += 1
                k = i % len(names)
                if echo_round(d, proxies[k], i, rec, self.deadline_s, names[k]):
                    time.sleep(PAUSE_AFTER_ERROR_S)
