"""Eight clients hammer one server with plain, moving and borrowing calls while the
test kills random domains (servers and clients) in random ways.  Afterwards: no
client hung or saw anything but DomainCrashed/DomainUnavailable, the supervisor
serves, and the heap checker finds nothing owned by the dead."""

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

from redleaf.domains.builtin.echo import Echo

MANIFEST = """
[heap]
size = "64MiB"
records = 65536

[supervisor]
watchdog_s = 5.0

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
max_restarts = 1000
period_s = 1.0
backoff_s = 0.01
"""


def _hammer(instance, seed, seconds, q):
    from redleaf.domains import DomainCrashed, DomainUnavailable, attach

    rng = random.Random(seed)
    ok = crashed = 0
    try:
        with attach(instance) as d:
            deadline = time.monotonic() + seconds
            v = None
            while time.monotonic() < deadline:
                try:
                    e = d.lookup("echo", Echo)
                    k = rng.randrange(1 << 30)
                    op = rng.randrange(3)
                    if op == 0:
                        assert e.inc(k) == k + 1
                    else:
                        v = d.heap.alloc_vec(np.uint8, rng.choice((64, 4096, 65536)))
                        v.np[:] = k & 0xFF
                        want = (k & 0xFF) * len(v.np)
                        if op == 1:
                            v = e.roundtrip(v)  # moved out and back
                            assert int(v.np.sum(dtype=np.uint64)) == want
                        else:
                            assert e.checksum(v) == want  # lent
                        v.drop()
                    ok += 1
                except (DomainCrashed, DomainUnavailable):
                    crashed += 1
                    if v is not None and v.alive:  # a lent buffer is still ours to free
                        v.drop()
                    time.sleep(0.005)
                v = None
        q.put(("ok", seed, ok, crashed))
    except BaseException as ex:  # anything else is a failure of the runtime
        q.put(("error", seed, repr(ex), crashed))


def _chaos(inst, seconds, clients=8, client_kills=2):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(inst.name, i, seconds, q)) for i in range(clients)]
    for p in procs:
        p.start()
    rng = random.Random(1)
    victims = set(rng.sample(range(clients), client_kills))
    end = time.monotonic() + seconds
    kills = 0
    try:
        while time.monotonic() < end - 0.5:
            time.sleep(rng.uniform(0.1, 0.4))
            if victims and rng.random() < 0.3:
                i = victims.pop()
                os.kill(procs[i].pid, signal.SIGKILL)
                continue
            st = inst.status().get("echo", {})
            if st.get("state") == "running":
                inst.request("kill", name="echo", how=rng.choice(["sigkill", "exception", "sigsegv"]))
                kills += 1
        results = {}
        for _ in range(clients - client_kills + len(victims)):
            tag, seed, a, b = q.get(timeout=seconds + 60)  # a hang would end here
            results[seed] = (tag, a, b)
    finally:
        for p in procs:
            if p.is_alive() and p.exitcode is None:
                p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
    return results, kills


def _settle(inst):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        st = inst.status()
        if not any(n.startswith("client-") for n in st) and st["echo"]["state"] == "running":
            return st
        time.sleep(0.05)
    return inst.status()


def _check(inst, results, kills):
    errors = {s: r for s, r in results.items() if r[0] != "ok"}
    assert not errors, errors
    assert kills >= 1
    assert sum(r[1] for r in results.values()) > 0
    st = _settle(inst)
    assert st["echo"]["state"] == "running"
    r = inst.request("heap", check=True)
    assert r["violations"] == []
    assert r["stats"]["domains"].get(str(st["echo"]["id"]), {}).get("objects", 0) == 0
    with inst.attach() as d:
        assert d.lookup("echo", Echo).inc(1) == 2


def test_chaos_short(make_instance):
    inst = make_instance(MANIFEST)
    results, kills = _chaos(inst, seconds=6)
    _check(inst, results, kills)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RUN_SLOW"), reason="set RUN_SLOW=1 for the long chaos run")
def test_chaos_long(make_instance):
    inst = make_instance(MANIFEST)
    results, kills = _chaos(inst, seconds=60)
    _check(inst, results, kills)
