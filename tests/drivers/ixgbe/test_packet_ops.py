"""PacketOps: batch moves of Packets in and out of RRefDeques, checked like the
one-at-a-time handle operations (and interoperable with them)."""

from __future__ import annotations

import numpy as np
import pytest

from redleaf.drivers.net import Packet, PacketOps
from redleaf.shared_heap import OwnershipError, record, u32


@record
class NotAPacket:
    x: u32


@pytest.fixture
def ops(world):
    """PacketOps of domain 1 on a standalone heap: no instance needed."""
    return PacketOps(world.domain(1))


def test_put_peek_take_round_trip_and_interop_with_handles(ops):
    offs = ops.alloc_packets(40)
    assert len(set(offs.tolist())) == 40
    assert not ops.mem[offs[0]:offs[0] + Packet.size].any()        # zeroed
    ops.set_lengths(offs, np.arange(40) + 60)
    dq = ops.deque(32)
    assert ops.put(dq, offs) == 32                                  # as many as fit
    assert len(dq) == 32 and ops.room(dq) == 0
    assert ops.peek(dq).tolist() == offs[:32].tolist()
    got = ops.take(dq, 5)
    assert got.tolist() == offs[:5].tolist() and len(dq) == 27
    assert ops.lengths(got).tolist() == [60, 61, 62, 63, 64]
    # the ring wraps: the rest goes in after the head moved
    assert ops.put(dq, offs[32:]) == 5                              # room for 5 of 8
    assert ops.peek(dq).tolist() == offs[5:37].tolist()
    # handles see the same objects
    h = dq.pop_front()
    assert h.offset == offs[5] and int(h.np["length"]) == 65
    dq.push_back(h)
    assert ops.peek(dq)[-1] == offs[5]
    out = ops.take(dq)
    assert len(dq) == 0 and sorted(out.tolist()) == sorted(offs[5:37].tolist())
    ops.free(out)
    with pytest.raises(OwnershipError):
        ops.free(out)                                               # already freed


def test_transfer_between_deques(ops):
    a = ops.deque(64, ops.alloc_packets(50))
    b = ops.deque(20)
    assert ops.transfer(a, b) == 20
    assert (len(a), len(b)) == (30, 20)
    assert ops.transfer(b, a, 7) == 7
    assert (len(a), len(b)) == (37, 13)


def test_refuses_what_it_does_not_own(ops):
    offs = ops.alloc_packets(4)
    dq = ops.deque(8, offs)
    with pytest.raises(OwnershipError, match="not Packets this domain owns"):
        ops.put(ops.deque(8), offs)                 # they are inside `dq` now
    with pytest.raises(OwnershipError, match="not the start of a heap object"):
        ops.put(ops.deque(8), offs + 8)                 # inside an object
    other = ops.heap.alloc(NotAPacket)
    with pytest.raises(OwnershipError):
        ops.put(ops.deque(8), np.array([other.offset]))
    with pytest.raises(OwnershipError, match="not an RRefDeque"):
        ops.peek(ops.heap.alloc_deque(NotAPacket, 4))
    # a forged entry (wrong generation) is refused before anything moves
    pairs = np.ndarray((8, 2), dtype=np.uint32, buffer=ops.heap.mem, offset=dq.offset + 16)
    pairs[2, 1] += 1
    with pytest.raises(OwnershipError, match="not live Packets inside it"):
        ops.take(dq)
    assert len(dq) == 4
    pairs[2, 1] -= 1
    assert ops.take(dq).tolist() == offs.tolist()


def test_offsets_outside_the_arena_and_forged_slots_are_refused(ops):
    with pytest.raises(OwnershipError):
        ops.put(ops.deque(4), np.array([0, -64, len(ops.heap.mem) + 4096]))
    dq = ops.deque(4, ops.alloc_packets(1))
    pairs = np.ndarray((4, 2), dtype=np.uint32, buffer=ops.heap.mem, offset=dq.offset + 16)
    pairs[0, 0] = 0xFFFFFFF0                       # a slot beyond the table
    with pytest.raises(OwnershipError, match="not live Packets inside it"):
        ops.peek(dq)


def test_fast_moves_match_record_ops_across_ring_wraps(ops):
    """PacketOps' take/put/peek (fewer numpy operations) against RecordOps' (the
    reference) on the same deques, through many wraps of the deque's ring."""
    from redleaf.shared_heap.batch import RecordOps
    from redleaf.drivers.net import Packet
    ref = RecordOps(ops.heap, Packet)
    rng = np.random.default_rng(7)
    pool = ops.alloc_packets(64)
    dq = ops.deque(24)
    inside: list[int] = []
    for i in range(200):
        use = ops if i % 2 else ref
        if rng.random() < 0.5 and pool.size:
            k = int(rng.integers(1, 12))
            if i % 3 == 0:                          # objects tracked since taken: no second check
                n = use.put_records(dq, *use.records_of(pool[:k]))
            else:
                n = use.put(dq, pool[:k])
            inside += pool[:n].tolist()
            pool = pool[n:]
        else:
            k = int(rng.integers(0, 12))
            got = use.take(dq, k)
            assert got.tolist() == inside[:len(got)]
            inside = inside[len(got):]
            pool = np.concatenate([pool, got])
        assert ops.peek(dq).tolist() == inside == ref.peek(dq).tolist()
        s1, g1, o1 = ops.peek_records(dq)
        s2, g2, o2 = ref.peek_records(dq)
        assert s1.tolist() == s2.tolist() and g1.tolist() == g2.tolist() and o1.tolist() == o2.tolist()


def test_fast_moves_refuse_what_record_ops_refuses(ops):
    offs = ops.alloc_packets(6)
    dq = ops.deque(8, offs[:4])
    pairs = np.ndarray((8, 2), dtype=np.uint32, buffer=ops.heap.mem, offset=dq.offset + 16)
    # the same object named twice
    saved = pairs[1].copy()
    pairs[1] = pairs[0]
    with pytest.raises(OwnershipError, match="twice"):
        ops.take(dq)
    pairs[1] = saved
    # an entry naming an object that is not inside this deque (owned at top level)
    saved = pairs[3].copy()
    other = ops.deque(4, offs[4:5])
    pairs[3] = np.ndarray((4, 2), dtype=np.uint32, buffer=ops.heap.mem, offset=other.offset + 16)[0]
    with pytest.raises(OwnershipError, match="not live Packets inside it"):
        ops.take(dq)
    pairs[3] = saved
    # slot 0 (no object)
    saved = pairs[2].copy()
    pairs[2, 0] = 0
    with pytest.raises(OwnershipError):
        ops.peek(dq)
    pairs[2] = saved
    assert ops.take(dq).tolist() == offs[:4].tolist()
    # put: the same offset twice in one batch, a lent object
    with pytest.raises(OwnershipError, match="twice"):
        ops.put(ops.deque(8), np.array([offs[5], offs[5]]))
    h = ops.heap.alloc(Packet)
    h.lend_to(ops.did + 1)
    with pytest.raises(OwnershipError, match="not Packets this domain owns"):
        ops.put(ops.deque(8), np.array([h.offset]))
    h.end_lend()
    assert ops.put(ops.deque(8), np.array([h.offset])) == 1
