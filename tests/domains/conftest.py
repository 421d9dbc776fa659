"""Placement fixtures (issue #17, DESIGN §7a): a fact about calls between domains is
tested with the caller a domain (tests/domains/placed_probe.py) either in its own
process or in its callee's group.  An attached client is a process of its own and can
never share a group, so it only drives the probe.

`placed` is an instance with Echo and the probe, once per placement in PLACEMENTS
(`make_placed(extra)` adds other callees, placed as Echo is); `placed.probe()`
attaches and hands the test the probe's proxy."""

from __future__ import annotations

import contextlib

import pytest

PLACEMENTS = ("process", "colocated")

PLACED_MANIFEST = """
[heap]
size = "32MiB"
records = 65536

[supervisor]
watchdog_s = 2.0

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 20
period_s = 5.0
backoff_s = 0.01
{group}

[[domain]]
name = "probe"
target = "tests.domains.placed_probe:PlacedProbeDomain"
uses = ["echo"]
restart = "permanent"
max_restarts = 20
period_s = 5.0
backoff_s = 0.01
{group}
"""


EXTRA = """
[[domain]]
name = "{name}"
target = "{target}"
restart = "permanent"
max_restarts = 20
period_s = 5.0
backoff_s = 0.0
{group}
"""


def placed_manifest(placement: str, extra: tuple = ()) -> str:
    """Echo and the probe; `extra` adds (name, target) callees placed as Echo is
    (the probe reaches them with ctx.lookup)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement {placement!r}: use one of {PLACEMENTS}")
    group = 'group = "g"' if placement == "colocated" else ""
    return PLACED_MANIFEST.format(group=group) + "".join(
        EXTRA.format(name=n, target=t, group=group) for n, t in extra)


class Placed:
    """An instance whose probe calls Echo from the given placement."""

    def __init__(self, inst, placement: str):
        self.inst = inst
        self.placement = placement

    @property
    def colocated(self) -> bool:
        return self.placement == "colocated"

    @contextlib.contextmanager
    def probe(self):
        from tests.domains.placed_probe import PlacedProbe

        with self.inst.attach() as c:
            yield c.lookup("probe", PlacedProbe)


@pytest.fixture(params=PLACEMENTS)
def placement(request) -> str:
    return request.param


@pytest.fixture
def make_placed(placement, make_instance):
    """make_placed(extra=()) -> Placed: an instance in this test's placement."""
    def make(extra: tuple = ()) -> Placed:
        inst = make_instance(placed_manifest(placement, extra))
        for name in ["probe"] + [n for n, _t in extra]:
            inst.wait_state(name, "running", timeout=30)
        return Placed(inst, placement)

    return make


@pytest.fixture
def placed(make_placed) -> Placed:
    return make_placed()
