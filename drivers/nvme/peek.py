"""Look into an RRefDeque without taking its elements out.

The shadow must remember every request it passes to the driver, but popping each
request out of the client's deque and pushing it into its own (and back again for
completions) costs two ownership-table updates per request per direction.  Reading
the deque in place lets it forward the client's deques to the driver as they are.

`shared_heap` has no public peek, so this reads the deque's ring (layout of
shared_heap/rref.py: header head, length, capacity, element type id as four u32,
then (slot, generation) u32 pairs) and validates every element's ownership
record the way `RRefDeque.pop_front` does: live, same generation, inside this
deque, of the expected type.  Read-only: nothing is written.
"""

from __future__ import annotations

import struct

from shared_heap import OwnershipError

_HDR = struct.Struct("<IIII")
_PAIR = struct.Struct("<II")
HDR_SIZE = 16
_LIVE = 1  # shared_heap.layout.R_LIVE


def peek(dq, elem) -> list[tuple[int, int, int]]:
    """[(slot, generation, heap offset)] of the elements of `dq`, front to back.

    `dq` must be owned by this domain; `elem` is the @record type it holds."""
    dq.buf  # ownership check of the deque itself (raises OwnershipError)
    heap = dq.heap
    mem = heap.mem
    base = dq.offset
    head, n, cap, tid = _HDR.unpack_from(mem, base)
    if cap * 8 + HDR_SIZE > dq.size or n > cap or head >= max(cap, 1):
        raise OwnershipError("corrupt RRefDeque header (written by a misbehaving domain)")
    if tid != elem.type_id:
        raise OwnershipError(f"the deque holds type {tid:#x}, not {elem.type_name}")
    out = []
    record = heap.record
    for i in range(n):
        slot, gen = _PAIR.unpack_from(mem, base + HDR_SIZE + 8 * ((head + i) % cap))
        st, _f, _k, _owner, rgen, rtid, off, size, _b, parent = record(slot)
        if st != _LIVE or rgen != gen or parent != dq.slot or rtid != elem.type_id or size != elem.size:
            raise OwnershipError(f"deque element slot {slot} is not a live {elem.type_name} of this deque")
        out.append((slot, gen, off))
    return out
