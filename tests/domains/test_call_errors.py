"""What a call can raise: one documented tree, and errors for the caller, not callee
deaths.  A bad method index, heap exhaustion in the callee, and a return value the
interface cannot carry reach the caller as errors; the callee keeps running (same pid)."""

import struct

import msgpack
import numpy as np
import pytest

import redleaf.domains as dom
import redleaf.shared_heap as sh
from redleaf.domains import (BadArgument, CallHeapExhausted, CallOwnershipError, CallRejected, ControlError,
                             DomainCrashed, DomainUnavailable, HeapExhausted, InstanceNotRunning, InterfaceError,
                             OwnershipError, RedleafError, RpcError, RpcTimeout)
from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.doorbell import RA_HEARTBEAT
from redleaf.domains.interface import spec_of


def _pid(inst, name="echo"):
    return inst.status()[name]["pid"]


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


def test_except_rpcerror_catches_a_used_after_move_rref(echo_instance):
    with echo_instance.attach() as d:
        e = d.lookup("echo", Echo)
        v = d.heap.alloc_vec(np.uint8, 8)
        back = e.roundtrip(v)
        try:
            e.roundtrip(v)  # v was moved by the first call
        except RpcError as err:
            caught = err
        assert isinstance(caught, OwnershipError) and "dead" in str(caught)
        back.drop()


_N = len(spec_of(Echo).by_index)
_INC = next(m.index for m in spec_of(Echo).by_index if m.name == "inc")


@pytest.mark.parametrize("idx", [True, _INC - _N, -1, 1.0, None, "inc", 1 << 40, _N])
def test_a_bad_method_index_is_refused_and_the_callee_survives(echo_instance, idx):
    """`True` is 1 and `-k` counts from the end in Python: both used to run a real
    method (here `inc`, which takes the one argument sent)."""
    inst = echo_instance
    pid = _pid(inst)
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        link = e._rl_link
        link.peer_for_call()
        kind, resp = link.invoke(msgpack.packb([idx, [5]]), 5.0, None)
        assert kind == chan.REJECTED and b"CallRejected" in bytes(resp), bytes(resp)
        assert e.inc(1) == 2
    assert _pid(inst) == pid


def test_heap_exhaustion_in_the_callee_reaches_the_caller(echo_instance):
    inst = echo_instance
    pid = _pid(inst)
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        with pytest.raises(CallHeapExhausted, match="Echo.fill|echo.fill") as ei:
            e.fill(64 << 20, 1)  # the heap is 32 MiB
        assert isinstance(ei.value, HeapExhausted) and isinstance(ei.value, RpcError)
        v = e.fill(1024, 2)  # and the callee still serves
        assert int(v.np.sum()) == 2048
        v.drop()
    assert _pid(inst) == pid
    assert inst.request("heap", check=True)["violations"] == []


def test_heap_exhaustion_in_the_caller_is_heapexhausted(echo_instance):
    with echo_instance.attach() as d:
        with pytest.raises(HeapExhausted):
            d.heap.alloc_vec(np.uint8, 64 << 20)


def test_a_return_value_out_of_range_is_the_callers_error_and_the_callee_survives(echo_instance):
    inst = echo_instance
    pid = _pid(inst)
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        assert e.inc((1 << 64) - 2) == (1 << 64) - 1
        with pytest.raises(BadArgument, match=r"inc\(\) returned"):
            e.inc((1 << 64) - 1)  # 2**64 does not fit msgpack's int
        assert e.inc(1) == 2
    assert _pid(inst) == pid


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
