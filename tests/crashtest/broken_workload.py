"""A user workload (`--workload tests.crashtest.broken_workload:run`) whose own data
check is deliberately wrong once a fault has hit its callee: the campaign must
report it as a violation with the key that replays it."""

from redleaf.domains import attach

MANIFEST = """
[heap]
size = "16MiB"
records = 4096

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 1000
period_s = 1.0
backoff_s = 0.005
"""
TARGETS = "echo"
METHODS = {"echo": ("inc",)}


def run(ctx):
    from redleaf.domains.builtin.echo import Echo

    with attach(ctx.instance) as d:
        e = d.lookup("echo", Echo)
        i = 0
        while not ctx.stop.is_set():
            ctx.gate()
            i += 1
            with ctx.call("Echo.inc", 10.0) as c:
                e.inc(i)
            if c.failed:
                ctx.problem("deliberately broken check: the workload's callee was restarted")
