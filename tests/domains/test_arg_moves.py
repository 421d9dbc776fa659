"""A call's moved arguments move all or nothing, and only if they are the caller's.

Forged requests (raw payloads no proxy would send) name objects the caller does not
own at the moment of the call: the callee's own state, a third party's object, one
object twice.  The callee refuses the whole call with OwnershipError, survives, and
every object of the call stays where it was; the heap statistics and the checker
show nothing leaked or moved."""

import msgpack
import numpy as np
import pytest

from redleaf.domains import CallOwnershipError, OwnershipError, RpcError
from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo, Stamp
from redleaf.domains.interface import spec_of
from redleaf.domains.marshal import rref_wire


def _index(name: str) -> int:
    return next(m.index for m in spec_of(Echo).by_index if m.name == name)


def _raw(proxy, method: str, args: list):
    link = proxy._rl_link
    link.peer_for_call()
    kind, resp = link.invoke(msgpack.packb([_index(method), args]), 5.0, None)
    return kind, bytes(resp)


def _wire(h) -> int:
    slot, gen, _tid = h.wire()
    return rref_wire(slot, gen)


def _objects(inst, name: str) -> int:
    return inst.status()[name]["heap_objects"]


def _live(inst) -> tuple:
    st = inst.request("heap", check=False)["stats"]
    return st["objects"], st["live_bytes"]


def _sound(inst) -> None:
    assert inst.request("heap", check=True)["violations"] == []


def test_the_callees_own_object_is_refused_and_stays_the_callees(echo_instance):
    """BDev.read(0, <wire of the shadow's own buffer>) handed a driver's internal
    buffer to the client: a wire naming an object the callee already owns is refused."""
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        v = d.heap.alloc_vec(np.uint8, 128)
        v.np[:] = 3
        w = _wire(v)
        assert e.keep(v) == 1  # now echo's own state
        assert _objects(inst, "echo") == 1
        kind, resp = _raw(e, "roundtrip", [w])
        assert kind == chan.REJECTED and b"OwnershipError" in resp and b"not by the caller" in resp, resp
        # still echo's, still intact: it was neither handed out nor freed
        assert _objects(inst, "echo") == 1
        assert e.kept_sum() == 3 * 128
        assert d.heap.hf.records["owner"][w & 0xFFFFFFFF] == e._rl_link.peer
    assert inst.status()["echo"]["pid"] == pid
    _sound(inst)


def test_a_third_partys_object_is_refused(echo_instance):
    inst = echo_instance
    inst.request("load", name="echo2", target="redleaf.domains.builtin.echo:EchoDomain", restart="permanent",
                 config={}, uses=[], shadow=False)
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        e2 = d.lookup("echo2", Echo)
        v = d.heap.alloc_vec(np.uint8, 64)
        v.np[:] = 5
        w = _wire(v)
        e2.keep(v)  # echo2 owns it now: a third party to a call from us to echo
        kind, resp = _raw(e, "roundtrip", [w])
        assert kind == chan.REJECTED and b"OwnershipError" in resp, resp
        assert _objects(inst, "echo") == 0 and _objects(inst, "echo2") == 1
        assert e2.kept_sum() == 5 * 64
        assert e.inc(1) == 2
    _sound(inst)


def test_one_wire_in_two_moved_arguments_is_refused_and_both_stay_with_the_caller(echo_instance):
    """The same wire twice panicked nvme0.driver (it freed the object twice)."""
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        v = d.heap.alloc_vec(np.uint8, 32)
        v.np[:] = 7
        w = _wire(v)
        kind, resp = _raw(e, "pair_vecs", [w, w])
        assert kind == chan.REJECTED and b"named twice" in resp, resp
        assert _objects(inst, "echo") == 0
        assert int(v.np.sum()) == 7 * 32  # still ours: usable and owned
        assert e.pair_vecs(v, d.heap.alloc_vec(np.uint8, 8)) == 40  # a proper call still works
    assert inst.status()["echo"]["pid"] == pid
    _sound(inst)


def test_when_one_moved_argument_is_refused_every_other_stays_with_the_caller(echo_instance):
    """A refused call left the arguments decoded before the bad one with the callee
    (80 objects leaked per batch of the attack, 244 MiB pinned in the driver)."""
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        before = _live(inst)
        goods = []
        for i in range(40):
            v = d.heap.alloc_vec(np.uint8, 4096)
            v.np[:] = i
            goods.append(v)
            s = d.heap.alloc(Stamp, n=1)
            sslot, sgen, _t = s.wire()
            # first argument the caller's own, second stale: the whole call is refused
            kind, resp = _raw(e, "pair", [_wire(v), rref_wire(sslot, sgen + 1)])
            assert kind == chan.REJECTED and b"OwnershipError" in resp, resp
            s.drop()
        assert _objects(inst, "echo") == 0
        for i, v in enumerate(goods):
            assert int(v.np[0]) == i and v.alive  # all still ours
            v.drop()
        assert _live(inst) == before  # nothing left anywhere, nothing pinned in echo
    assert inst.status()["echo"]["pid"] == pid
    _sound(inst)


def test_a_refused_proxy_call_gives_the_caller_its_handles_back(echo_instance):
    """Through the proxy: the callee refuses the second argument (a handle whose type
    was forged on the caller's side, past the caller's check); the first one, already
    killed by the proxy for the call, is alive again afterwards."""
    inst = echo_instance
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        v = d.heap.alloc_vec(np.uint8, 16)
        v.np[:] = 1
        other = d.heap.alloc_vec(np.uint64, 1)  # a vector passed off as an RRef[Stamp]
        fake = type(d.heap.alloc(Stamp))._make(d.heap, other.slot, other.gen, other.type_id, other.offset,
                                                 other.size, Stamp)
        with pytest.raises(CallOwnershipError) as ei:
            e.pair(v, fake)
        assert isinstance(ei.value, RpcError) and isinstance(ei.value, OwnershipError)
        assert v.alive and fake.alive and other.alive
        assert int(v.np.sum()) == 16
        assert _objects(inst, "echo") == 0
        assert e.pair(v, d.heap.alloc(Stamp, n=4)) == 20
        other.drop()
    _sound(inst)


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
