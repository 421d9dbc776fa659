"""A declared error gives up the objects the call was moved (as a Rust callee returning
Err drops its arguments), except those the callee kept."""

from __future__ import annotations

import numpy as np
import pytest

from tests.domains.keeping import Keeping, Refused

MANIFEST = """
[[domain]]
name = "k"
target = "tests.domains.keeping:KeepingDomain"
"""


def test_a_refused_call_frees_what_it_was_moved_unless_the_callee_kept_it(make_instance):
    inst = make_instance(MANIFEST)
    with inst.attach() as c:
        k = c.lookup("k", Keeping)
        base = inst.status()["k"]["heap_objects"]
        for _ in range(50):
            buf = c.heap.alloc_vec(np.uint8, 64)
            with pytest.raises(Refused):
                k.refuse(buf, False)
        assert inst.status()["k"]["heap_objects"] == base   # nothing leaked into the callee
        buf = c.heap.alloc_vec(np.uint8, 64)
        buf.np[:] = 1
        with pytest.raises(Refused):
            k.refuse(buf, True)
        assert k.kept() == 64                                # kept, intact
        assert inst.status()["k"]["heap_objects"] == base + 1
