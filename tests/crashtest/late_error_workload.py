"""A user workload (`--workload tests.crashtest.late_error_workload:run`) whose round
outlives the outage it saw: like a shell line whose program fails after the callee is
back, it reports the error only once the campaign has seen the target recover and
asks the loop to park.  The campaign must still judge it with the wave that caused it."""

from redleaf.domains import attach
from redleaf.domains.errors import DomainCrashed, RpcError

from .broken_workload import MANIFEST  # noqa: F401  (the instance: one Echo domain)

TARGETS = "echo"


def run(ctx):
    from redleaf.domains.builtin.echo import Echo

    wl = ctx.gate.__self__  # the campaign's Workload: its hold event is the "park now" request
    with attach(ctx.instance) as d:
        e = d.lookup("echo", Echo)
        i = 0
        while not ctx.stop.is_set():
            ctx.gate()
            i += 1
            try:
                e.inc(i)
                ctx.ok()
                continue
            except RpcError:
                pass
            # the round goes on past the outage (echo answers again), and reports what
            # it saw only once the campaign, done waiting for the recovery, parks us
            wl.hold.wait(60.0)
            with ctx.call("a round that failed earlier", 10.0):
                raise DomainCrashed("echo crashed under this round (reported at its end)")
