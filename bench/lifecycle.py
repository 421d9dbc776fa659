"""`redleaf bench lifecycle`: how fast a domain starts and comes back.

load -> serving: from the `load` request to the first answered call on the new
domain.  kill -9 -> serving: from SIGKILL of a running domain to the first answered
call on its restarted incarnation.  Peers in the same run: multiprocessing spawn to
the first message over a Pipe, and a plain `python -c` subprocess start to its first
line of output.  idle: the CPU the default instance (every process of it) uses while
nothing calls it, in percent of one core, beside a Python process asleep in select().
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

from redleaf.bench import row, summarize

B = "lifecycle"
MANIFEST = """
[heap]
size = "32MiB"
records = 16384
[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
max_restarts = 1000
period_s = 0.05
"""
# period_s is short and the kills are spaced beyond it, so that every kill is the
# first in a quiet period and is restarted at once: this measures the restart
# path, not the exponential backoff a crash loop would (rightly) get.


def _child(conn):
    conn.send(b"hi")


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench lifecycle")
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--idle-s", type=float, default=10.0, help="how long to measure the idle instance")
    a = ap.parse_args(argv)
    n = a.n
    rows: list[dict] = []
    from redleaf.domains.builtin.echo import Echo
    from redleaf.domains.errors import RpcError
    from redleaf.supervisor.instance import Instance

    load_s, restart_s = [], []
    with Instance(MANIFEST) as inst:
        with inst.attach() as d:
            for i in range(n):
                name = f"x{i}"
                t0 = time.perf_counter()
                inst.request("load", name=name, target="redleaf.domains.builtin.echo:EchoDomain", restart="temporary",
                             config={}, uses=[], shadow=False)
                p = d.lookup(name, Echo)
                p.null()
                load_s.append(time.perf_counter() - t0)
                inst.request("unload", name=name)
            e = d.lookup("echo", Echo)
            e.null()
            for i in range(n):
                pid = inst.status()["echo"]["pid"]
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                while True:
                    try:
                        e.null()
                        break
                    except RpcError:
                        time.sleep(0.0005)
                restart_s.append(time.perf_counter() - t0)
                time.sleep(0.06)  # past period_s: the next kill starts a quiet period
    rows += summarize(B, "load-to-serving", "redleaf", load_s, "ms")
    rows += summarize(B, "kill9-to-serving", "redleaf", restart_s, "ms")

    ctx = mp.get_context("spawn")
    spawn_s = []
    for _ in range(n):
        t0 = time.perf_counter()
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(w,))
        p.start()
        r.recv_bytes()
        spawn_s.append(time.perf_counter() - t0)
        p.join()
    rows += summarize(B, "start-to-first-message", "mp-spawn", spawn_s, "ms")
    sub_s = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", "print(1)"], stdout=subprocess.PIPE)
        p.stdout.readline()
        sub_s.append(time.perf_counter() - t0)
        p.wait()
    rows += summarize(B, "start-to-first-message", "python-c", sub_s, "ms")
    rows += _idle(a.idle_s)
    med = {(r["case"], r["system"]): r["value"] for r in rows if r["metric"] == "median"}
    for case in ("load-to-serving", "kill9-to-serving"):
        for peer in ("mp-spawn", "python-c"):
            rows.append(row(B, case, f"{peer}/redleaf", "ratio",
                            med[("start-to-first-message", peer)] / med[(case, "redleaf")], "x"))
    return rows


def _idle(seconds: float) -> list[dict]:
    """The default manifest's instance, idle, and a Python process asleep in select()."""
    import tempfile

    import psutil

    from redleaf.supervisor.instance import Instance

    with tempfile.TemporaryDirectory() as cwd, Instance(None, cwd=cwd) as inst:
        time.sleep(1.0)   # boot work done
        use = inst.cpu_usage(seconds)
    peer = subprocess.Popen([sys.executable, "-c", "import select; select.select([], [], [], 3600)"])
    try:
        time.sleep(1.0)
        p = psutil.Process(peer.pid)
        c0 = sum(p.cpu_times()[:2])
        time.sleep(seconds)
        peer_pct = 100 * (sum(p.cpu_times()[:2]) - c0) / seconds
    finally:
        peer.kill()
        peer.wait()
    return [row(B, "idle-cpu", "redleaf", "mean", sum(u["cpu_pct"] for u in use.values()), "%core"),
            row(B, "idle-cpu", "python-select", "mean", peer_pct, "%core"),
            row(B, "idle-wakeups", "redleaf", "rate", sum(u["wakes"] for u in use.values()) / seconds, "1/s")]
