import struct

import numpy as np
import pytest

import redleaf.shared_heap as sh
from redleaf.shared_heap import Bytes, HeapExhausted, HeapManager, OwnershipError, record, u8, u32, u64, f64
from redleaf.shared_heap import layout as L


@record
class Point:
    x: f64
    y: f64


@record
class BlockReq:
    block: u64
    len: u32
    flag: u8
    where: Point
    data: Bytes[4096]


def test_layout_roundtrip():
    lay = L.Layout.compute(1 << 20, 1000, 8)
    assert L.Layout.decode(lay.encode()) == lay
    assert lay.arena % L.PAGE == 0 and lay.maps % L.PAGE == 0
    with pytest.raises(sh.HeapCorrupt):
        L.Layout.decode(b"X" * 200)


def test_header_self_description(world):
    h = world.domain(2)
    r = h.alloc(Point, x=1.0)
    other = HeapManager.open(world.path)
    try:
        reg = other.hf.read_registry()
        assert reg[Point.type_id]["name"].endswith("Point")
        doc = L.read_registry_doc(other.hf.mem, other.hf.layout)
        assert doc["schema"]["record"]["descr"][0] == ["state", "|u1"]
        assert other.check() == []
        assert other.stats()["objects"] == 1
    finally:
        del r
        other.close()


def test_record_types():
    assert BlockReq.dtype.fields["where"][0] == Point.dtype
    assert BlockReq.size == BlockReq.dtype.itemsize >= 8 + 4 + 1 + 16 + 4096
    assert isinstance(BlockReq.type_id, int) and 0 < BlockReq.type_id < 1 << 32
    with pytest.raises(TypeError):
        @record
        class Bad:
            x: int


def test_alloc_access_free(world):
    h = world.domain(2)
    r = h.alloc(BlockReq, block=7, len=512)
    assert r.value["block"] == 7 and r.np["len"] == 512
    r.np["where"]["x"] = 2.5
    r.buf[-1] = 9
    assert r.to_bytes()[-1] == 9
    assert r.value["where"]["x"] == 2.5
    v = h.alloc_vec(np.uint8, 100)
    v.np[:] = np.arange(100, dtype=np.uint8)
    assert len(v) == 100 and bytes(v.buf[:3]) == b"\x00\x01\x02"
    assert world.m.check() == []
    r.drop()
    with pytest.raises(OwnershipError):
        r.buf
    v.drop()
    assert world.m.stats()["objects"] == 0
    assert world.m.check() == []


def test_sizes_and_reuse(world):
    h = world.domain(2)
    objs = [h.alloc_vec(np.uint8, n) for n in (1, 63, 64, 65, 4096, 32768, 32769, 200000)]
    assert world.m.check() == []
    offs = [o.offset for o in objs]
    for o in objs:
        o.drop()
    again = [h.alloc_vec(np.uint8, n) for n in (1, 63, 64, 65, 4096, 32768, 32769, 200000)]
    assert sorted(o.offset for o in again) == sorted(offs)   # freed memory is reused
    assert world.m.check() == []


def test_move_and_stale_adopt(world):
    a, b, c = world.domain(2), world.domain(3), world.domain(4)
    r = a.alloc(Point, x=3.0)
    w = r.move_to(3)
    with pytest.raises(OwnershipError):
        r.value
    with pytest.raises(OwnershipError):
        c.adopt(*w)                     # owned by another domain
    with pytest.raises(OwnershipError):
        a.adopt(*w)                     # the old owner cannot take it back
    rb = b.adopt(*w)
    assert rb.value["x"] == 3.0
    slot, gen, tid = w
    with pytest.raises(OwnershipError):
        b.adopt(slot, gen + 1, tid)     # forged generation
    with pytest.raises(OwnershipError):
        b.adopt(slot, gen, tid ^ 1)     # wrong type
    with pytest.raises(OwnershipError):
        b.adopt(10 ** 6, 0, tid)        # out of range
    with pytest.raises(OwnershipError):
        b.adopt(0, 0, tid)              # the null slot
    rb.drop()                           # freed remotely: a's chunk slot comes back via rescan
    with pytest.raises(OwnershipError):
        b.adopt(*w)                     # stale
    assert world.m.check() == []


def test_objects_go_only_to_domain_ids(world):
    a = world.domain(2)
    r = a.alloc(Point, x=1.0)
    for bad in (0, -1, 16, 10 ** 9):      # 0 is the record pool; max_domains is 16
        with pytest.raises(ValueError, match="domain ids run from 1 to 15"):
            r.move_to(bad)
        with pytest.raises(ValueError, match="domain ids run from 1 to 15"):
            r.lend_to(bad)
    assert r.value["x"] == 1.0            # refused before anything changed
    assert world.m.check() == []
    # the checker names a live object given to the pool (nobody would ever free it)
    world.m.hf.records["owner"][r.slot] = 0
    assert any("owned by id 0" in v for v in world.m.check())
    world.m.hf.records["owner"][r.slot] = 2
    r.drop()
    assert world.m.check() == []


def test_remote_free_rescan(world):
    a, b = world.domain(2), world.domain(3)
    objs = [a.alloc_vec(np.uint8, 1000) for _ in range(64)]   # one whole 1 KiB-class chunk
    leased = world.m.stats()["domains"]["2"]["leased_bytes"]
    for o in objs:
        b.adopt(*o.move_to(3)).drop()
    for _ in range(64):
        a.alloc_vec(np.uint8, 1000)
    assert world.m.stats()["domains"]["2"]["leased_bytes"] == leased
    assert world.m.check() == []


def test_borrow(world):
    a, b = world.domain(2), world.domain(3)
    r = a.alloc(Point, x=1.5)
    r.lend_to(3)
    br = b.adopt_borrowed(*r.wire(), lender=2)
    assert br.value["x"] == 1.5
    with pytest.raises((ValueError, TypeError)):
        br.buf[0] = 1
    with pytest.raises(OwnershipError):
        br.move_to(4)
    with pytest.raises(OwnershipError):
        b.adopt(*r.wire())
    r.end_lend()
    with pytest.raises(OwnershipError):
        br.value
    assert r.value["x"] == 1.5
    assert world.m.check() == []


def test_reclaim_defers_lent_objects(world):
    a, b = world.domain(2), world.domain(3)
    r = a.alloc(Point, x=1.5)
    keep = a.alloc_vec(np.uint8, 10)
    r.lend_to(3)
    rep = world.m.reclaim(2, borrow_active=lambda borrower, slot: borrower == 3)
    assert [s for s, _ in rep.deferred] == [r.slot]
    assert world.m.check() == []
    world.m.release_deferred(r.slot)
    assert world.m.check() == []
    assert world.m.stats()["objects"] == 0
    with pytest.raises(OwnershipError):
        keep.buf


@pytest.mark.parametrize("forge", ["generation", "twice", "header"])
def test_dropping_a_forged_container_frees_every_element(world, forge):
    """Entries a misbehaving domain overwrote are not trusted, and the elements they
    hid are still found and freed: a drop never stops half-way."""
    a = world.domain(2)
    dq = a.alloc_deque(Point, 4)
    arr = a.alloc_array(Point, 3)
    for i in range(3):
        dq.push_back(a.alloc(Point, x=float(i)))
        arr.put(i, a.alloc(Point, x=float(i)))
    for c in (dq, arr):
        pairs = np.ndarray((3, 2), dtype=np.uint32, buffer=a.mem, offset=c.offset + 16)
        if forge == "generation":
            pairs[1, 1] += 1
        elif forge == "twice":
            pairs[2] = pairs[0]
        elif c is dq:
            struct.pack_into("<I", a.mem, c.offset + 4, 99)   # length beyond the capacity
        else:
            pairs[1] = (10 ** 6, 0)                           # a slot out of range
    dq.drop()
    arr.drop()
    assert world.m.check() == []
    assert world.m.stats()["objects"] == 0


def test_containers(world):
    a, b = world.domain(2), world.domain(3)
    dq = a.alloc_deque(Point, 4)
    for i in range(4):
        dq.push_back(a.alloc(Point, x=float(i)))
    with pytest.raises(OverflowError):
        dq.push_back(a.alloc(Point))
    assert len(dq) == 4
    wb = b.adopt(*dq.move_to(3))           # O(1): elements follow their container
    assert world.m.check() == []
    first = wb.pop_front()
    assert first.value["x"] == 0.0 and len(wb) == 3
    arr = b.alloc_array(Point, 3)
    arr.put(1, first)
    assert arr.take(0) is None
    assert world.m.check() == []
    wb.drop()                              # drops its 3 elements
    assert world.m.stats()["objects"] == 2 + 1   # arr + its element + the orphan Point of a
    rep = world.m.reclaim(3)
    assert rep.objects == 2
    assert world.m.check() == []


def test_reclaim_everything(world):
    a, b = world.domain(2), world.domain(3)
    dq = a.alloc_deque(BlockReq, 8)
    for _ in range(5):
        dq.push_back(a.alloc(BlockReq))
    moved = b.adopt(*a.alloc_vec(np.uint8, 100).move_to(3))
    [a.alloc_vec(np.uint8, n) for n in (10, 5000, 100000)]
    assert world.m.check() == []
    rep = world.m.reclaim(2)
    assert rep.objects == 1 + 5 + 3
    assert world.m.check() == []
    assert bytes(moved.buf) == bytes(100)     # b's object (in a's ex-chunk) survives
    moved.drop()
    world.m.sweep_orphans()
    world.m.reclaim(3)
    st = world.m.stats()
    assert st["objects"] == 0 and st["free_bytes"] == st["arena_bytes"]
    assert world.m.check() == []


def test_exhaustion_then_usable():
    from .conftest import World
    w = World(size=1 << 20, records=256)
    try:
        h = w.domain(2)
        objs = []
        with pytest.raises(HeapExhausted) as ei:
            while True:
                objs.append(h.alloc_vec(np.uint8, 8000))
        assert "size" in str(ei.value)
        assert w.m.check() == []
        for o in objs:
            o.drop()
        objs = [h.alloc_vec(np.uint8, 8000) for _ in range(len(objs))]
        assert w.m.check() == []
    finally:
        w.close()


def test_runtime_area(world):
    a = world.domain(2)
    area = a.runtime_area(2)
    assert len(area) == 64
    area[0] = 42
    assert world.m.runtime_area(2)[0] == 42


def test_check_from_readonly_open(world):
    a = world.domain(2)
    objs = [a.alloc_vec(np.uint8, 100) for _ in range(3)]
    ro = HeapManager.open(world.path, readonly=True)
    try:
        assert ro.check() == []
        assert ro.stats()["objects"] == 3
    finally:
        ro.close()
    # a domain the supervisor's table has found dead is reported until its reclaim fixes
    # it (the heap's own domain-table byte is for readers only: the manager of record
    # never decides from bytes a domain can write)
    world.m.hf.domains["state"][2] = L.D_DEAD
    assert world.m.check() == []
    assert any("dead domain 2" in v for v in world.m.check(dead=[2]))
    world.m.reclaim(2)
    assert world.m.check() == []
    with pytest.raises(OwnershipError):
        objs[0].buf


def test_crash_after_free_before_map_clear(world):
    """Simulate a kill between 'state FREE' and 'map entry 0': reclaim's journal redo."""
    a = world.domain(2)
    v = a.alloc_vec(np.uint8, 64)
    slot, off = v.slot, v.offset
    m = world.m
    unit = (off - m.hf.arena_off) // L.UNIT
    L.JOURNAL.pack_into(m.hf.mem, m.hf.layout.domains + 2 * L.DOMAIN_ENTRY + L.JOURNAL_OFF,
                        L.J_FREE, slot, unit)
    m.hf.records["state"][slot] = L.R_FREE          # killed before "gen + 1"
    gen = int(m.hf.records["gen"][slot])
    assert any("occupancy" in x for x in m.check())
    m.reclaim(2)
    assert m.check() == []
    # the slot goes back to the pool with a new generation: the old handle stays dead
    assert int(m.hf.records["gen"][slot]) != gen
