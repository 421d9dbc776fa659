"""The fault plan is a pure function of the seed and the options."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redleaf.crashtest.schedule import (FAULT_KINDS, SCHEDULES, PlanError, make_plan, parse_kinds,
                                        resolve_targets, waves)

kinds = st.lists(st.sampled_from(FAULT_KINDS), min_size=1, unique=True)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**63), schedule=st.sampled_from(SCHEDULES), ks=kinds, count=st.integers(0, 200),
       rate=st.floats(0.1, 1000))
def test_the_same_seed_gives_the_same_plan(seed, schedule, ks, count, rate):
    a = make_plan(seed, kinds=ks, schedule=schedule, rate=rate, count=count)
    b = make_plan(seed, kinds=ks, schedule=schedule, rate=rate, count=count)
    assert a == b
    assert len(a) == count
    assert [f.index for f in a] == list(range(count))
    assert all(f.kind in ks for f in a)
    assert all(1 <= f.nth <= 3 and 0.05 <= f.hold_s <= 0.5 for f in a)
    # time never runs backwards, and waves are consecutive runs
    assert all(x.at_s <= y.at_s for x, y in zip(a, a[1:]))
    assert [w[0].wave for w in waves(a)] == sorted({f.wave for f in a})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_different_seeds_give_different_plans(seed):
    assert make_plan(seed, count=50) != make_plan(seed + 1, count=50)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), duration=st.floats(0.5, 20), rate=st.floats(0.5, 50),
       schedule=st.sampled_from(SCHEDULES))
def test_a_duration_bounds_the_plan(seed, duration, rate, schedule):
    plan = make_plan(seed, schedule=schedule, rate=rate, duration=duration)
    assert plan and all(f.at_s < duration + 1 for f in plan)
    assert plan == make_plan(seed, schedule=schedule, rate=rate, duration=duration)


def test_the_shapes_of_the_schedules():
    fixed = make_plan(1, schedule="fixed", rate=4, count=8)
    assert [f.at_s for f in fixed] == [i * 0.25 for i in range(8)]
    assert len(waves(fixed)) == 8
    sim = make_plan(1, schedule="simultaneous", rate=4, count=30)
    assert all(2 <= len(w) <= 3 for w in waves(sim)[:-1])
    assert all(len({f.at_s for f in w}) == 1 for w in waves(sim))  # the same instant
    burst = make_plan(1, schedule="burst", rate=4, count=30)
    assert all(2 <= len(w) <= 5 for w in waves(burst)[:-1])
    assert all(len({f.at_s for f in w}) == len(w) for w in waves(burst))  # back to back
    # --count C --duration D spreads C faults over D seconds
    spread = make_plan(1, count=10, duration=2.0)
    assert spread[-1].at_s == pytest.approx(1.8)


def test_targets_are_distinct_within_a_wave_while_there_are_enough():
    plan = make_plan(7, schedule="simultaneous", count=60)
    for w in waves(plan):
        got = resolve_targets(w, ["c", "a", "b"])
        assert len(set(got)) == len(got)
        assert resolve_targets(w, ["a", "b", "c"]) == got  # by the sorted names, not their order
        assert set(resolve_targets(w, ["only"])) == {"only"}
    assert resolve_targets(plan[:1], []) == []


@pytest.mark.parametrize("kw,msg", [({"count": None}, "give --count"), ({"schedule": "often"}, "unknown schedule"),
                                    ({"kinds": ("boom",)}, "unknown fault kind"), ({"rate": 0.0}, "--rate must be"),
                                    ({"count": -1}, "--count must be")])
def test_bad_options_say_what_is_wrong(kw, msg):
    args = {"count": 5, **kw}
    with pytest.raises(PlanError, match=msg):
        make_plan(0, **args)


def test_parse_kinds():
    assert parse_kinds(None) == FAULT_KINDS
    assert parse_kinds("stop, sigkill,stop") == ("stop", "sigkill")
    with pytest.raises(PlanError, match="unknown fault kind.*segv"):
        parse_kinds("sigkill,segv")


def test_the_supervisor_kind_is_on_request_only():
    from redleaf.crashtest.schedule import ALL_KINDS, EXTRA_KINDS

    assert "supervisor" in EXTRA_KINDS and "supervisor" not in FAULT_KINDS
    assert ALL_KINDS == FAULT_KINDS + EXTRA_KINDS
    assert "supervisor" not in parse_kinds(None)
    assert parse_kinds("supervisor,sigkill") == ("supervisor", "sigkill")
    # a default plan is what it was before the kind existed: drawn from FAULT_KINDS
    assert {f.kind for f in make_plan(3, count=200)} <= set(FAULT_KINDS)
    assert {f.kind for f in make_plan(3, kinds=("supervisor",), count=3)} == {"supervisor"}
