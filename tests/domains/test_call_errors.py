"""What a call can raise: one documented tree, and errors for the caller, not callee
deaths.  A bad method index, heap exhaustion in the callee, a use after move and a
return value the interface cannot carry are tested between two domains in both
placements (test_placed_calls.py); here, the tree and the attached client's side."""

import struct

import numpy as np
import pytest

import redleaf.domains as dom
import redleaf.shared_heap as sh
from redleaf.domains import (BadArgument, CallHeapExhausted, CallOwnershipError, CallRejected, ControlError,
                             DomainCrashed, DomainUnavailable, HeapExhausted, InstanceNotRunning, InterfaceError,
                             OwnershipError, RedleafError, RpcError, RpcTimeout)
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.doorbell import RA_HEARTBEAT


def test_the_class_tree_is_the_documented_one():
    assert sh.RedleafError is RedleafError is dom.errors.RedleafError
    assert sh.OwnershipError is OwnershipError and sh.HeapExhausted is HeapExhausted
    for cls in (sh.HeapError, RpcError, ControlError, InterfaceError):
        assert issubclass(cls, RedleafError)
    for cls in (OwnershipError, HeapExhausted, sh.HeapCorrupt):
        assert issubclass(cls, sh.HeapError)
    for cls in (DomainCrashed, DomainUnavailable, RpcTimeout, BadArgument, CallRejected, CallOwnershipError,
                CallHeapExhausted):
        assert issubclass(cls, RpcError)
    assert issubclass(CallOwnershipError, OwnershipError) and issubclass(CallHeapExhausted, HeapExhausted)
    assert issubclass(BadArgument, TypeError) and issubclass(InterfaceError, TypeError)
    assert issubclass(InstanceNotRunning, ControlError)
    # the documented tree names every class the package exports
    for name in dom.__all__:
        obj = getattr(dom, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert name in dom.errors.__doc__, name


def test_heap_exhaustion_in_the_caller_is_heapexhausted(echo_instance):
    with echo_instance.attach() as d:
        with pytest.raises(HeapExhausted):
            d.heap.alloc_vec(np.uint8, 64 << 20)


@pytest.mark.parametrize("method,args", [("inc", (1 << 64,)), ("inc", (-(1 << 63) - 1,)),
                                         ("sleep", (1 << 64,)), ("sleep", (-(1 << 70),))])
def test_an_int_msgpack_cannot_carry_is_refused_before_sending(echo_instance, method, args):
    inst = echo_instance
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        made = d.rt.calls_made
        with pytest.raises(BadArgument, match="range"):
            getattr(e, method)(*args)
        assert d.rt.calls_made == made  # nothing was sent
        e.sleep(0)  # an int the float parameter can carry still goes


def test_beat_is_seen_by_the_watchdog(echo_instance):
    with echo_instance.attach() as d:
        area = d.heap.runtime_area(d.domain_id)
        before = struct.unpack_from("<Q", area, RA_HEARTBEAT)[0]
        d.rt.beat()
        d.rt.beat()
        assert struct.unpack_from("<Q", area, RA_HEARTBEAT)[0] == before + 2
