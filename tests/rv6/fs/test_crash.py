"""Crash consistency, CrashMonkey-style (see crashsim.py): every crash point of bounded
workloads, with fsck, exact commit states and fsync'd contents checked.

CI runs a bounded set of crash states; RUN_SLOW=1 runs at least 10,000 and prints how
many it covered and how long it took."""

import os

import pytest

from redleaf.rv6.fs.file import MAX_WRITE_PER_OP

from . import crashsim

SLOW = os.environ.get("RUN_SLOW") == "1"
RW, C = os.O_RDWR, os.O_CREAT


def _blob(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)


def mix(fs, r, rng):
    """Every operation kind, with fsyncs between (sizes and offsets vary with the seed)."""
    fs.mkdir("/d")
    fs.mkdir("/d/e")
    fd = fs.open("/d/f", RW | C)
    fs.write(fd, _blob(rng, rng.randint(1, 30000)))
    r.fsync(fd, "/d/f")
    r.changing("/d/f")
    fs.pwrite(fd, b"patch", rng.randint(0, 40000))
    fs.close(fd)
    r.changing("/d/f", "/d/e/g")
    fs.link("/d/f", "/d/e/g")
    fd = fs.open("/x", RW | C)
    fs.write(fd, _blob(rng, rng.randint(4096, 70000)))
    r.fsync(fd, "/x")
    r.changing("/x")
    fs.truncate("/x", rng.randint(0, 30000))
    fs.close(fd)
    r.changing("/d/f")
    fs.unlink("/d/f")
    r.changing("/x", "/d/e/x")
    fs.rename("/x", "/d/e/x")
    fs.mkdir("/tmp")
    fs.rmdir("/tmp")
    fd = fs.open("/d/e/x", RW)
    r.changing("/d/e/x")
    fs.pwrite(fd, _blob(rng, rng.randint(1, 9000)), rng.choice([70000, 4095, 2 << 20]))
    r.fsync(fd, "/d/e/x")
    fs.close(fd)


def big_write(fs, r, rng):
    """One write spanning several transactions, then truncates that span several too."""
    data = _blob(rng, 4 * MAX_WRITE_PER_OP + rng.randint(0, MAX_WRITE_PER_OP))
    fd = fs.open("/big", RW | C)
    fs.pwrite(fd, data, rng.randint(0, 9000))
    r.fsync(fd, "/big")
    r.changing("/big")
    fs.truncate("/big", rng.randint(0, 3 * MAX_WRITE_PER_OP))
    r.fsync(fd, "/big")
    fs.close(fd)


def rename_over(fs, r, rng):
    """The atomic-replace idiom: write a temp file, fsync, rename it over the target."""
    fd = fs.open("/conf", RW | C)
    fs.write(fd, b"version 1\n" * 500)
    r.fsync(fd, "/conf")
    fs.close(fd)
    for v in (2, 3):
        fd = fs.open("/conf.tmp", RW | C)
        fs.write(fd, f"version {v}\n".encode() * (300 * v))
        r.fsync(fd, "/conf.tmp")
        fs.close(fd)
        r.changing("/conf", "/conf.tmp")
        fs.rename("/conf.tmp", "/conf")
        fd = fs.open("/conf")
        r.fsync(fd, "/conf")
        fs.close(fd)


def deep_tree(fs, r, rng):
    """A deep directory tree, files in it, a subtree moved, then taken down."""
    path = ""
    for i in range(8):
        path += f"/l{i}"
        fs.mkdir(path)
    fd = fs.open(path + "/leaf", RW | C)
    fs.write(fd, _blob(rng, 5000))
    r.fsync(fd, path + "/leaf")
    fs.close(fd)
    fs.mkdir("/other")
    r.changing(path + "/leaf", "/other/l3/l4/l5/l6/l7/leaf")
    fs.rename("/l0/l1/l2/l3", "/other/l3")
    fd = fs.open("/other/l3/l4/l5/l6/l7/leaf")
    r.fsync(fd, "/other/l3/l4/l5/l6/l7/leaf")
    fs.close(fd)
    r.changing("/other/l3/l4/l5/l6/l7/leaf")
    fs.unlink("/other/l3/l4/l5/l6/l7/leaf")
    for p in ["/other/l3/l4/l5/l6/l7", "/other/l3/l4/l5/l6", "/other/l3/l4/l5"]:
        fs.rmdir(p)
    fs.sync()


WORKLOADS = {"mix": mix, "big_write": big_write, "rename_over": rename_over, "deep_tree": deep_tree}


# a log of one operation commits every operation; one of three groups several a commit
LOGS = {"commit-per-op": 65, "group-commit": 193}


@pytest.mark.parametrize("log", sorted(LOGS))
@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_crash_point_recovers_to_a_commit(name, log):
    rec = crashsim.record(WORKLOADS[name], log_blocks=LOGS[log])
    res = crashsim.check(rec, subsets_per_window=4, seed=1, limit=None)
    # every flush gives at least one state; fsyncs were really checked
    assert res.states >= sum(1 for e in rec.events if e[0] == "f")
    assert res.commits >= 2 and res.checked_fsyncs > 0
    print(f"{name}/{log}: {res.states} crash states, {res.commits} commits, "
          f"{res.checked_fsyncs} fsync checks, {res.seconds:.1f}s")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SLOW, reason="set RUN_SLOW=1 for 10,000+ crash states")
def test_ten_thousand_crash_states():
    target = int(os.environ.get("RV6_CRASH_STATES", "50000"))
    total, secs = 0, 0.0
    seed = 0
    while total < target:
        for name, w in sorted(WORKLOADS.items()):
            for log in LOGS.values():
                rec = crashsim.record(w, log_blocks=log, seed=seed)
                res = crashsim.check(rec, subsets_per_window=12, seed=seed)
                total += res.states
                secs += res.seconds
        seed += 1
        print(f"  round {seed}: {total} states, {secs:.0f}s", flush=True)
    print(f"\nRUN_SLOW crash run: {total} crash states over {seed} rounds of "
          f"{len(WORKLOADS)} workloads x {len(LOGS)} log sizes in {secs:.0f}s")
    assert total >= 10_000
