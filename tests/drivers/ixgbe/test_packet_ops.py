"""PacketOps: batch moves of Packets in and out of RRefDeques, checked like the
one-at-a-time handle operations (and interoperable with them)."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.net import Packet, PacketOps
from shared_heap import OwnershipError, record, u32
from tests.conftest import ECHO_MANIFEST


@record
class NotAPacket:
    x: u32


@pytest.fixture
def ops(make_instance):
    inst = make_instance(ECHO_MANIFEST)
    with inst.attach() as c:
        yield PacketOps(c.heap)


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
