"""The shadow's record of requests in flight (pure: no processes)."""
from __future__ import annotations

import numpy as np
import pytest

from redleaf.drivers.nvme.shadow import DriverLost, InflightTable


def arr(*xs):
    return np.array(xs, dtype=np.int64)


def test_add_complete_forget_drain():
    t = InflightTable(64)
    t.add(arr(3, 5, 9), arr(1, 1, 2), arr(300, 500, 900), [30, 50, 90], False)
    t.add(arr(11, 12), arr(7, 7), arr(1100, 1200), [110, 120], True, [b"a" * 4096, b"b" * 4096])
    assert len(t) == 5
    assert t.complete(arr(5, 12), arr(1, 7)).tolist() == [500, 1200] and len(t) == 3
    assert 12 not in t.data
    # a completion of something not in flight (or of an older generation) is refused
    with pytest.raises(DriverLost):
        t.complete(arr(5), arr(1))
    with pytest.raises(DriverLost):
        t.complete(arr(9), arr(1))
    with pytest.raises(DriverLost):
        t.complete(arr(9, 9), arr(2, 2))                  # the same one twice in one batch
    assert t.forget(arr(3, 4), arr(1, 1)) == 1 and len(t) == 2
    owed = t.drain()
    assert sorted((p.block, p.write, p.data) for p in owed) == [(90, False, None), (110, True, b"a" * 4096)]
    assert len(t) == 0 and t.drain() == []


def test_the_same_slot_again_is_a_bookkeeping_error():
    t = InflightTable(8)
    t.add(arr(1), arr(0), arr(64), [5], False)
    with pytest.raises(RuntimeError):
        t.add(arr(1), arr(0), arr(64), [5], False)
