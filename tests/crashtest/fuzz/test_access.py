"""The access check (crashtest/fuzz/access.py): as a second, unprivileged user made for
the test, every way into a running instance (control and event sockets, token, heap,
runtime dir, log, doorbell, signals) is refused; the files are 0600 in a 0700 dir."""

import os
import pwd
import tempfile

import pytest

from redleaf.crashtest.fuzz import access
from redleaf.crashtest.fuzz.tally import Tally


@pytest.fixture
def other_user():
    try:
        with access.unprivileged_user() as ids:
            yield ids
    except access.UserUnavailable as e:
        pytest.skip(str(e))


def test_every_attempt_of_another_user_is_refused(echo_instance, other_user):
    uid, gid = other_user
    pids = {n: r["pid"] for n, r in echo_instance.status().items()}
    tally = access.fuzz(echo_instance, uid, gid, len(access.ATTEMPTS), seed=0)
    r = tally.result()
    assert r["crashes"] == 0 and r["unclear"] == 0, r["findings"]
    assert r["refused"] == len(access.ATTEMPTS) and set(r["kinds"]) == set(access.ATTEMPTS)
    assert {n: row["pid"] for n, row in echo_instance.status().items()} == pids


def test_the_attempts_do_reach_what_the_other_user_may_use(other_user):
    """Not vacuous: the same child, aimed at an open file and dir, gets in."""
    uid, gid = other_user
    with tempfile.TemporaryDirectory(dir="/tmp") as d:   # (pytest's tmp_path sits in a 0700 dir)
        os.chmod(d, 0o755)
        open_file = os.path.join(d, "open")
        with open(open_file, "wb") as f:
            f.write(b"x")
        os.chmod(open_file, 0o644)
        t = {"token": open_file, "root": d, "heap": open_file, "log": open_file, "supervisor": os.getpid()}
        got = access.attempt_as(uid, gid, ["read token", "stat token", "list runtime dir", "open heap",
                                           "open heap rw", "signal supervisor"], t)
    assert got == ["ALLOWED", "ALLOWED", "ALLOWED", "ALLOWED", "refused: EACCES", "refused: EPERM"]


def test_the_user_is_removed_afterwards():
    try:
        with access.unprivileged_user() as (uid, _gid):
            name = pwd.getpwuid(uid).pw_name
    except access.UserUnavailable as e:
        pytest.skip(str(e))
    with pytest.raises(KeyError):
        pwd.getpwnam(name)


def test_run_reports_its_attempts_or_why_it_skipped():
    r = access.run(len(access.ATTEMPTS), seed=1)
    if "skipped" in r:
        assert r["inputs"] == 0 and r["skipped"]
        return
    assert r["inputs"] == len(access.ATTEMPTS) and r["refused"] == r["inputs"], r["findings"]
    assert r["crashes"] == 0 and r["unclear"] == 0


def test_a_breach_is_a_finding():
    t = Tally("access", 0)
    t.confuse("read token as uid 999: ALLOWED")
    assert t.result()["unclear"] == 1 and "ALLOWED" in t.result()["findings"][0]
