"""The judgement of the Rv6 workloads without processes: fs-ops' model of what was
acknowledged and what may or may not have happened, and which errors each workload
expects from which targets (rv6-usertests' outcome check too)."""

from __future__ import annotations

import random

import pytest

from redleaf.crashtest.workloads import BUILTIN, get
from redleaf.crashtest.workloads.fs_ops import DIR, FILES, SCRATCH, TOPS, FsModel, FsOpsWorkload, content
from redleaf.crashtest.workloads.rv6_usertests import Rv6UsertestsWorkload, judge, round_script


def _ready_model() -> FsModel:
    m = FsModel()
    for d in TOPS:
        m.state[d] = DIR
    return m


def test_a_fresh_model_makes_its_directories_first():
    m = FsModel()
    op = m.plan(random.Random(1))
    assert (op.kind, op.args["path"]) == ("mkdir", "/a")
    m.acknowledged(op)
    assert m.state["/a"] == DIR and m.uncertain is None
    assert m.plan(random.Random(1)).args["path"] == "/b"


def test_an_interrupted_create_may_have_left_nothing_or_an_empty_file_but_not_its_data():
    m = _ready_model()
    op = m._op("create", path="/a/f0", size=100)
    m.interrupted(op, attempted=1)  # the open(O_CREAT) failed: it may have made the file
    assert m.settle({"/a/f0": b""}) is None and m.state["/a/f0"] == b""
    m.state["/a/f0"] = None
    m.interrupted(op, attempted=1)
    problem = m.settle({"/a/f0": content("/a/f0", m.version, 100)})  # the write was never sent
    assert problem and "expected one of" in problem and "/a/f0: absent" in problem
    m.state["/a/f0"] = None
    m.interrupted(op, attempted=2)  # the write was sent: it may have landed
    assert m.settle({"/a/f0": content("/a/f0", m.version, 100)}) is None


def test_an_interrupted_rename_is_atomic_never_both_gone():
    m = _ready_model()
    m.state["/a/f0"], m.state["/b/f1"] = b"old", b"other"
    op = m._op("rename", path="/a/f0", to="/b/f1")
    m.interrupted(op, attempted=1)
    assert m.settle({"/a/f0": b"old", "/b/f1": b"other"}) is None  # not done
    m.interrupted(op, attempted=1)
    assert m.settle({"/a/f0": None, "/b/f1": b"old"}) is None  # done
    assert m.state["/b/f1"] == b"old" and m.state["/a/f0"] is None
    m.state["/a/f0"], m.state["/b/f1"] = b"old", b"other"
    m.interrupted(op, attempted=1)
    assert m.settle({"/a/f0": None, "/b/f1": None}) is not None  # half a rename: lost data


def test_a_checked_read_of_an_acknowledged_file_names_the_first_wrong_byte():
    m = _ready_model()
    m.state["/a/f2"] = b"abcdef"
    assert m.check("/a/f2", b"abcdef") is None
    msg = m.check("/a/f2", b"abcXef")
    assert "first difference at byte 3" in msg
    assert "absent" in m.check("/a/f2", None)


def test_pwrite_past_the_end_and_truncate_up_read_as_zeros():
    m = _ready_model()
    m.state["/a/f0"] = b"xy"
    op = m._op("pwrite", path="/a/f0", size=1, offset=5)
    assert op.worlds[-1]["/a/f0"] == b"xy\0\0\0" + content("/a/f0", m.version, 1)
    op = m._op("truncate", path="/a/f0", length=4)
    assert op.worlds[-1]["/a/f0"] == b"xy\0\0"


def _apply_some(disk: dict, op, rng: random.Random, attempted: int) -> None:
    """What a crash may leave of an op whose `attempted` steps were sent: a prefix."""
    k = rng.randint(0, min(attempted, len(op.worlds) - 1))
    disk.update(op.worlds[k])


@pytest.mark.parametrize("seed", range(5))
def test_the_model_accepts_every_outcome_an_fs_that_commits_in_order_can_leave(seed):
    """Simulated: an in-memory disk that, when a round is interrupted, keeps a random
    prefix of its steps.  Every settlement passes, and every acknowledged state is
    what a read returns; a disk that loses an acknowledged write is caught."""
    rng = random.Random(seed)
    m, disk = FsModel(), {p: None for p in TOPS + SCRATCH + FILES}
    interrupted = 0
    for _ in range(400):
        if m.uncertain:
            assert m.settle({p: disk[p] for p in m.touched_slots()}) is None
            continue
        op = m.plan(rng)
        if op.kind == "verify":
            assert m.check(op.args["path"], disk[op.args["path"]]) is None
            continue
        if rng.random() < 0.3:
            attempted = rng.randint(0, len(op.worlds) - 1)
            _apply_some(disk, op, rng, attempted)
            m.interrupted(op, attempted)
            interrupted += 1
        else:
            disk.update(op.worlds[-1])
            m.acknowledged(op)
    assert interrupted > 50
    assert all(m.check(p, disk[p]) is None for p in disk)
    # a lost acknowledged write
    victim = next(p for p in FILES if isinstance(disk[p], bytes) and disk[p])
    assert m.check(victim, disk[victim][:-1]) is not None


def test_fs_ops_expects_errors_only_from_the_fs_and_the_shadow():
    w = FsOpsWorkload("/nonexistent")
    for kind in ("DomainCrashed", "DomainUnavailable", "RpcTimeout", "FsError(EBADF)"):
        assert w.expected(kind, {"rv6fs"}) and w.expected(kind, {"nvme0"})
        assert not w.expected(kind, {"nvme0.driver"}) and not w.expected(kind, {"nvme0-dev"})
    assert not w.expected("FsError(EIO)", {"rv6fs"})  # an fs restart loses no data: never EIO
    assert "rv6fs" in w.manifest() and "install_programs = false" in w.manifest()


def test_rv6_usertests_judges_status_and_output():
    rng = random.Random(3)
    rounds = [round_script(rng, i) for i in range(40)]
    assert {p for p, _a, _w in rounds} == {"/bin/sh", "/bin/usertests"}
    assert any("cat f | wc" in a[-1] for p, a, _w in rounds if p == "/bin/sh")
    path, argv, want = next(x for x in rounds if x[1][-1].startswith("echo a"))
    words = argv[-1].split(" |")[0][len("echo "):]
    assert want == f"1 3 {len(words) + 1} \n"  # wc of "a{i} b c\n": lines, words, bytes
    path, argv, want = next(x for x in rounds if x[0] == "/bin/usertests")
    assert want == f"usertests starting\ntest {argv[1]}: OK\nALL TESTS PASSED\n"
    assert judge(0, want, want) is None
    assert "exit status 1" in judge(1, want, want)
    assert "output" in judge(0, "0 0 0 \n", want)
    w = Rv6UsertestsWorkload("/nonexistent")
    for kind in ("ProgramFailed", "Rv6Error(EIO)", "Rv6Error(ECHILD)", "DomainCrashed"):
        assert w.expected(kind, {"rv6kernel"}) and w.expected(kind, {"rv6fs"}) and w.expected(kind, {"nvme0"})
        assert not w.expected(kind, {"nvme0.driver"}) and not w.expected(kind, {"nvme0-dev"})


def test_both_are_built_in():
    assert {"fs-ops", "rv6-usertests"} <= set(BUILTIN)
    assert isinstance(get("fs-ops", "/nonexistent"), FsOpsWorkload)
    assert isinstance(get("rv6-usertests", "/nonexistent"), Rv6UsertestsWorkload)
