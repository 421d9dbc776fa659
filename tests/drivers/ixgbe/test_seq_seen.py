"""SeqSeen (the pktgen sink's record of sequence numbers) against a plain set."""

import numpy as np
from hypothesis import given, settings, strategies as st

from redleaf.drivers.ixgbe.frames import SeqSeen


class Small(SeqSeen):
    BITS = 4      # chunks of 16 numbers, so that tests cross many chunk boundaries
    KEEP = 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 200), min_size=1, max_size=20), min_size=1, max_size=30))
def test_duplicates_and_losses_match_a_set_within_the_window(batches):
    s, model, dups, added = Small(), set(), 0, set()
    for b in batches:
        added |= set(b)
        seqs = np.array(b, dtype=np.int64)
        floor = s.floor << Small.BITS           # numbers below this are forgotten
        late = {x for x in b if x < floor}
        want = len(b) - len(set(b)) + len({x for x in b if x in model or x < floor})
        got = s.add(seqs)
        assert got == want
        dups += got
        model |= set(b) - late
        assert s.top == max(added)
        assert len(s.chunks) <= Small.KEEP
    assert s.distinct == len(model)
    assert s.lost() == s.top + 1 - len(model)


def test_the_fast_path_and_chunk_boundaries():
    s = Small()
    s.add_new(np.arange(0, 40, dtype=np.int64))          # crosses two boundaries
    s.add_new(np.array([41, 47, 48, 100], dtype=np.int64))
    assert s.distinct == 44 and s.top == 100 and s.lost() == 101 - 44
    # 100 opened chunk 6: chunks below 4 (numbers below 64) are forgotten
    assert s.add(np.array([47, 99, 99], dtype=np.int64)) == 2   # 47 too late to tell, 99 twice
    assert s.add(np.array([3, 70], dtype=np.int64)) == 1        # 3 too late; 70 is new
    assert s.late == 2 and s.distinct == 46 and len(s.chunks) <= Small.KEEP


def test_a_long_run_keeps_memory_bounded():
    s = SeqSeen()
    for start in range(0, 40 << 20, 1 << 18):                  # 40 M numbers, in order
        s.add_new(np.arange(start, start + (1 << 18), dtype=np.int64))
    assert len(s.chunks) <= SeqSeen.KEEP and s.lost() == 0 and s.distinct == 40 << 20
