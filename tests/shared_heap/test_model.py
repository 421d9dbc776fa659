"""Model-based test: several domains in one process against a plain Python model."""

import numpy as np
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from redleaf.shared_heap import HeapExhausted, OwnershipError, RRefVec

from .conftest import World

DOMAINS = (2, 3, 4)
SIZES = (1, 64, 100, 4096, 20000, 70000)


class HeapMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.w = World(size=8 << 20, records=2048)
        self.heaps = {d: self.w.domain(d) for d in DOMAINS}
        self.objs = {}        # key -> [owner, handle, fill byte]
        self.deques = {}      # owner -> (handle, [keys inside])
        self.lent = {}        # key -> borrowed handle
        self.stale = []       # wire tuples of freed / moved-away objects
        self.next = 0

    def teardown(self):
        self.w.close()

    def _pick(self, data_idx):
        keys = sorted(self.objs)
        return keys[data_idx % len(keys)] if keys else None

    @rule(d=st.sampled_from(DOMAINS), size=st.sampled_from(SIZES), fill=st.integers(0, 255))
    def alloc(self, d, size, fill):
        try:
            h = self.heaps[d].alloc_vec(np.uint8, size)
        except HeapExhausted:
            return
        h.np[:] = fill
        self.objs[self.next] = [d, h, fill]
        self.next += 1

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 10 ** 6))
    def free(self, i):
        k = self._pick(i)
        owner, h, _ = self.objs[k]
        if k in self.lent:
            with pytest.raises(OwnershipError):
                h.drop()
            return
        w = h.wire()
        h.drop()
        del self.objs[k]
        self.stale.append((owner, w))

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 10 ** 6), to=st.sampled_from(DOMAINS))
    def move(self, i, to):
        k = self._pick(i)
        owner, h, fill = self.objs[k]
        if k in self.lent:
            return
        w = h.move_to(to)
        with pytest.raises(OwnershipError):
            h.buf
        if to != owner:
            with pytest.raises(OwnershipError):
                self.heaps[owner].adopt(*w)
        self.objs[k] = [to, self.heaps[to].adopt(*w), fill]

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 10 ** 6), to=st.sampled_from(DOMAINS))
    def borrow(self, i, to):
        k = self._pick(i)
        owner, h, fill = self.objs[k]
        if k in self.lent or to == owner:
            return
        h.lend_to(to)
        b = self.heaps[to].adopt_borrowed(*h.wire(), lender=owner)
        assert b.np.flags.writeable is False
        self.lent[k] = b

    @precondition(lambda self: self.lent)
    @rule(i=st.integers(0, 10 ** 6))
    def end_borrow(self, i):
        k = sorted(self.lent)[i % len(self.lent)]
        b = self.lent.pop(k)
        self.objs[k][1].end_lend()
        with pytest.raises(OwnershipError):
            b.buf

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 10 ** 6))
    def push(self, i):
        k = self._pick(i)
        owner, h, fill = self.objs[k]
        if k in self.lent:
            return
        if owner not in self.deques:
            try:
                self.deques[owner] = (self.heaps[owner].alloc_deque(RRefVec, 4), [])
            except HeapExhausted:
                return
        dq, inside = self.deques[owner]
        if len(inside) == 4:
            return
        dq.push_back(h)
        with pytest.raises(OwnershipError):
            h.buf
        inside.append((k, fill))
        del self.objs[k]

    @precondition(lambda self: any(v[1] for v in self.deques.values()))
    @rule(d=st.sampled_from(DOMAINS))
    def pop(self, d):
        if d not in self.deques or not self.deques[d][1]:
            return
        dq, inside = self.deques[d]
        k, fill = inside.pop(0)
        h = dq.pop_front()
        assert bool((h.np == fill).all())
        self.objs[k] = [d, h, fill]

    @rule(d=st.sampled_from(DOMAINS))
    def crash_and_reclaim(self, d):
        for k in [k for k in self.lent if self.objs[k][0] == d]:
            del self.lent[k]
        for k in [k for k, b in self.lent.items() if b.heap.domain_id == d]:
            self.objs[k][1].end_lend()
            del self.lent[k]
        self.w.m.reclaim(d)
        gone = [k for k, v in self.objs.items() if v[0] == d]
        for k in gone:
            self.stale.append((d, self.objs[k][1].wire()))
            with pytest.raises(OwnershipError):
                self.objs[k][1].buf
            del self.objs[k]
        self.deques.pop(d, None)
        self.heaps[d].close()
        self.heaps[d] = self.w.domain(d)

    @precondition(lambda self: self.stale)
    @rule(i=st.integers(0, 10 ** 6), d=st.sampled_from(DOMAINS))
    def stale_adopt(self, i, d):
        _, (slot, gen, tid) = self.stale[i % len(self.stale)]
        for attempt in ((slot, gen, tid), (slot + 10 ** 6, gen, tid), (slot, gen + 7, tid)):
            with pytest.raises(OwnershipError):
                self.heaps[d].adopt(*attempt)

    @invariant()
    def heap_is_sound(self):
        assert self.w.m.check() == []
        rec = self.w.m.hf.records
        for owner, h, fill in self.objs.values():
            assert int(rec["owner"][h.slot]) == owner
            assert bool((h.np == fill).all())
        live_top = int(((rec["state"] != 0) & (rec["parent"] == 0)).sum())
        assert live_top == len(self.objs) + len(self.deques)


HeapMachine.TestCase.settings = settings(max_examples=75, stateful_step_count=50, deadline=None,
                                         suppress_health_check=list(HealthCheck))
TestHeapModel = HeapMachine.TestCase
