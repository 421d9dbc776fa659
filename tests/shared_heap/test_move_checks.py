"""The one-read fast paths of a move's checks (RRef.check_movable, Heap.inspect_moved)
refuse exactly what the layered checks refuse, with the same precise messages.

Why: the fast paths answer only the common case (live, owned, unlent, this
generation) and hand everything else to the layered checks; a wrong condition in a
fast path would let a handle through that the layered checks refuse.  Each case
here compares the fast path's error with the layered check's (`_check_unlent`) on
an identical situation, and the handle's state afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

from redleaf.shared_heap import OwnershipError


def _raised(fn) -> str | None:
    try:
        fn()
    except OwnershipError as e:
        return str(e)
    return None


def _situations(world):
    """Handles in each state a move must refuse, and one it allows ("owned")."""
    a, b = world.domain(2), world.domain(3)
    out = {"owned": a.alloc_vec(np.uint8, 8)}
    lent = a.alloc_vec(np.uint8, 8)
    lent.lend_to(3)
    out["lent"] = lent
    dropped = a.alloc_vec(np.uint8, 8)
    dropped.drop()
    out["dead"] = dropped
    borrowed = a.alloc_vec(np.uint8, 8)
    borrowed.lend_to(3)
    out["borrowed"] = b.adopt_borrowed(*borrowed.wire(), lender=2)
    # handles the owner believes alive although the record says otherwise (only the
    # record can tell): moved to domain 3, and moved then freed by domain 3
    moved = a.alloc_vec(np.uint8, 8)
    moved.move_to(3)
    moved.mode = 0
    out["moved"] = moved
    freed = a.alloc_vec(np.uint8, 8)
    b.adopt(*freed.move_to(3)).drop()
    freed.mode = 0
    out["freed"] = freed
    return out


@pytest.mark.parametrize("case", ["owned", "lent", "dead", "moved", "borrowed", "freed"])
def test_check_movable_fast_path_refuses_as_the_layered_check(world, case):
    h = _situations(world)[case]
    mode = h.mode
    fast = _raised(h.check_movable)
    fast_mode = h.mode
    h.mode = mode
    layered = _raised(h._check_unlent)
    assert fast == layered
    assert fast_mode == h.mode  # the same marking of a stale handle as dead
    assert (fast is None) == (case == "owned")


def test_inspect_moved_refuses_forged_and_foreign_slots(world):
    a, b = world.domain(2), world.domain(3)
    world.domain(4)
    v = a.alloc_vec(np.uint8, 8)
    slot, gen, _t = v.wire()
    assert b.inspect_moved(slot, gen, 2).slot == slot  # validated, nothing written
    assert a.record(slot)[3] == 2
    for bad_slot in (0, 10 ** 6, -1):
        msg = _raised(lambda s=bad_slot: b.inspect_moved(s, 0, 2))
        assert msg is not None and "out of range" in msg
    assert "not by the caller" in _raised(lambda: b.inspect_moved(slot, gen, 4))
    assert "not live" in _raised(lambda: b.inspect_moved(slot, gen + 1, 2))
    v.lend_to(4)
    assert "is lent to domain 4" in _raised(lambda: b.inspect_moved(slot, gen, 2))
