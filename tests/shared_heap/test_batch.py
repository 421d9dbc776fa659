"""RecordOps on a record type other than Packet: the checks that matter for a
driver trusting a client's deque (duplicates, forged entries, foreign objects),
field access, and the heap staying consistent (checker) after batch moves."""

from __future__ import annotations

import numpy as np
import pytest

from redleaf.shared_heap import OwnershipError, record, u32, u64
from redleaf.shared_heap.batch import RecordOps


@record
class Req:
    block: u64
    status: u32
    flags: u32


@pytest.fixture
def client(world):
    """(heap manager, domain 1's heap) on a standalone heap: no instance needed."""
    return world.m, world.domain(1)


def test_fields_round_trip_and_deque_moves(client):
    _m, heap = client
    ops = RecordOps(heap, Req)
    offs = ops.alloc(20)
    ops.set(offs, "block", np.arange(20) * 7)
    ops.set(offs, "status", 3)
    assert ops.get(offs, "block").tolist() == [i * 7 for i in range(20)]
    dq = ops.deque(16)
    assert ops.put(dq, offs) == 16 and ops.length(dq) == 16
    slots, gens, got = ops.peek_records(dq, skip=10)
    assert got.tolist() == offs[10:16].tolist() and slots.size == gens.size == 6
    assert ops.owned(offs).tolist() == [False] * 16 + [True] * 4   # inside the deque now
    out = ops.take(dq, 5)
    assert out.tolist() == offs[:5].tolist() and ops.owned(out).all()
    # handles see the same objects, with the same fields
    h = dq.pop_front()
    assert h.offset == offs[5] and int(h.np["block"]) == 35


def test_a_deque_naming_one_object_twice_is_refused_before_anything_moves(client):
    _m, heap = client
    ops = RecordOps(heap, Req)
    offs = ops.alloc(3)
    dq = ops.deque(4, offs)
    pairs = np.ndarray((4, 2), dtype=np.uint32, buffer=heap.mem, offset=dq.offset + 16)
    pairs[3] = pairs[0]                                   # forge a fourth entry
    np.ndarray((4,), dtype=np.uint32, buffer=heap.mem, offset=dq.offset)[1] = 4
    with pytest.raises(OwnershipError, match="twice"):
        ops.take(dq)
    assert ops.length(dq) == 4 and not ops.owned(offs).any()


def test_put_refuses_duplicates_and_foreign_types(client):
    _m, heap = client
    ops = RecordOps(heap, Req)
    offs = ops.alloc(2)
    with pytest.raises(OwnershipError, match="twice"):
        ops.put(ops.deque(4), np.array([offs[0], offs[0]]))
    blob = heap.alloc_vec(np.uint8, 64)
    with pytest.raises(OwnershipError, match="not Reqs this domain owns"):
        ops.put(ops.deque(4), np.array([blob.offset]))


def test_heap_is_consistent_after_batch_moves_and_frees(client):
    m, heap = client
    ops = RecordOps(heap, Req)
    offs = ops.alloc(100)
    a, b = ops.deque(64), ops.deque(64)
    ops.put(a, offs[:60])
    ops.transfer(a, b, 25)
    ops.free(ops.take(b))
    ops.free(offs[60:])
    with pytest.raises(OwnershipError):
        ops.free(offs[60:61])                              # already freed
    assert m.check() == []


def test_put_records_cannot_put_another_domains_object_into_a_deque(world):
    """Found by the deque fuzzer (crashtest/fuzz/deque.py): put_records wrote the parent
    field of whatever slots it was given, so a domain could put another domain's object
    into its own deque, and whoever took the deque took that object from its owner."""
    victim, thief, receiver = world.domain(1), world.domain(2), world.domain(3)
    v_ops, t_ops = RecordOps(victim, Req), RecordOps(thief, Req)
    mine = v_ops.alloc(1)
    slots, gens = v_ops.records_of(mine)
    dq = t_ops.deque(4)
    with pytest.raises(OwnershipError, match="put_records"):
        t_ops.put_records(dq, slots, gens)
    assert t_ops.length(dq) == 0 and v_ops.owned(mine).all()      # the victim's record untouched
    # and the deque, moved on, gives the receiver nothing of the victim's
    wire = dq.move_to(3)
    got = RecordOps(receiver, Req).take(receiver.adopt(*wire))
    assert got.size == 0 and v_ops.owned(mine).all()


def test_put_records_refuses_stale_out_of_range_inside_and_twice(client):
    _m, heap = client
    ops = RecordOps(heap, Req)
    offs = ops.alloc(3)
    slots, gens = ops.records_of(offs)
    inside = ops.deque(4, offs[2:])
    dq = ops.deque(8)
    for s, g in [(slots[:1], gens[:1] + 1), (np.array([1 << 40]), gens[:1]), (np.array([0]), gens[:1]),
                 (slots[2:], gens[2:]), (np.repeat(slots[:1], 2), np.repeat(gens[:1], 2))]:
        with pytest.raises(OwnershipError):
            ops.put_records(dq, s, g)
    assert ops.length(dq) == 0 and ops.length(inside) == 1
    assert ops.put_records(dq, slots[:2], gens[:2]) == 2     # its own, top level: taken
