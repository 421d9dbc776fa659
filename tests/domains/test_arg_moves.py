"""A call's moved arguments move all or nothing, and only if they are the caller's.

The callee's refusals (its own object, a third party's, one wire twice, a stale
second argument, a type forged past the caller's check) are tested between two
domains in both placements in test_placed_calls.py.  Here: the caller's proxy
refuses one object named twice before anything is sent."""

import numpy as np
import pytest

from redleaf.domains import CallOwnershipError
from redleaf.domains.builtin.echo import Echo


def _objects(inst, name: str) -> int:
    return inst.status()[name]["heap_objects"]


def _sound(inst) -> None:
    assert inst.request("heap", check=True)["violations"] == []


def test_the_proxy_refuses_one_handle_twice_before_sending(echo_instance):
    inst = echo_instance
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        v = d.heap.alloc_vec(np.uint8, 16)
        twin = d.heap.adopt(v.slot, v.gen, None)  # a second handle to the same object
        with pytest.raises(CallOwnershipError, match="named twice"):
            e.pair_vecs(v, twin)
        assert v.alive and twin.alive
        assert _objects(inst, "echo") == 0
        v.drop()
    _sound(inst)
