"""The vector batch paths: NvmeDriverCore.submit_batch / reap_arrays and the
controller's batch execution (NvmeController._run_io_batch), checked against the
one-command-at-a-time semantics: same data, same statuses, phase tags across
queue wraps, odd commands in the middle of a batch."""
from __future__ import annotations

import numpy as np

from redleaf.drivers.nvme import spec as S
from redleaf.drivers.nvme.store import MemoryBlockStore

from .nvme_rig import Rig


def pattern(seed: int, n: int = 4096) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def run(rig: Rig):
    """Ring, let the device run, reap: (others, offsets, statuses) of everything."""
    rig.drv.ring()
    rig.ctrl.process()
    return rig.drv.reap_arrays()


def test_batches_wrap_both_queues_many_times_and_keep_data():
    rig = Rig(disk_blocks=512, io_queue_size=16)           # 15 in flight at most
    d = rig.drv
    bufs = np.array([rig.buf(4096)[0] for _ in range(15)], dtype=np.int64)
    ref = {}
    rng = np.random.default_rng(1)
    for rnd in range(40):                                  # ~600 commands, 16-entry queues
        k = int(rng.integers(4, 16))
        blocks = rng.choice(512, size=k, replace=False).astype(np.uint64)
        write = rnd % 2 == 0
        for b, off in zip(blocks.tolist(), bufs[:k].tolist()):
            if write:
                data = pattern(rnd * 1000 + b)
                rig.dma[off:off + 4096] = data
                ref[b] = data
        assert d.submit_batch(S.NVM_WRITE if write else S.NVM_READ, blocks, bufs[:k]) == k
        others, offs, status = run(rig)
        assert others == [] and sorted(offs.tolist()) == sorted(bufs[:k].tolist())
        assert not status.any() and d.outstanding() == 0 and d.space() == 15
        if not write:
            for b, off in zip(blocks.tolist(), bufs[:k].tolist()):
                assert bytes(rig.dma[off:off + 4096]) == ref.get(b, bytes(4096))
    assert rig.ctrl.stats["errors"] == 0


def test_batch_queues_only_what_fits():
    rig = Rig(io_queue_size=8)
    bufs = np.array([rig.buf(4096)[0] for _ in range(10)], dtype=np.int64)
    d = rig.drv
    assert d.submit_batch(S.NVM_READ, np.arange(10, dtype=np.uint64), bufs) == 7
    assert d.space() == 0 and d.submit_batch(S.NVM_READ, np.arange(3, dtype=np.uint64), bufs[7:]) == 0
    _o, offs, status = run(rig)
    assert sorted(offs.tolist()) == sorted(bufs[:7].tolist()) and not status.any()


def test_bad_commands_inside_a_batch_get_their_own_status():
    rig = Rig(disk_blocks=64, io_queue_size=32)
    d = rig.drv
    good = [rig.buf(4096)[0] for _ in range(6)]
    for i, off in enumerate(good):
        rig.dma[off:off + 4096] = pattern(i)
    d.submit_batch(S.NVM_WRITE, np.arange(6, dtype=np.uint64), np.array(good))
    run(rig)
    # a read batch with: an LBA past the end, a buffer outside the DMA window, an
    # unaligned buffer, and a bad namespace, between good reads
    outs = [rig.buf(4096)[0] for _ in range(6)]
    d.submit_batch(S.NVM_READ, np.array([0, 1], dtype=np.uint64), np.array(outs[:2]))
    d.submit_raw("lba", S.NVM_READ, prp1=outs[2], cdw10=64)
    d.submit_raw("dma", S.NVM_READ, prp1=rig.dma_limit + 4096, cdw10=2)
    d.submit_raw("ns", S.NVM_READ, nsid=7, prp1=outs[3], cdw10=3)
    d.submit_batch(S.NVM_READ, np.array([4, 5], dtype=np.uint64), np.array(outs[4:6]))
    others, offs, status = run(rig)
    st = dict(others)
    assert st["lba"] == S.ST_LBA_OUT_OF_RANGE
    assert st["dma"] != 0 and st["ns"] == S.ST_INVALID_NAMESPACE
    assert sorted(offs.tolist()) == sorted([outs[0], outs[1], outs[4], outs[5]]) and not status.any()
    for b, off in ((0, outs[0]), (1, outs[1]), (4, outs[4]), (5, outs[5])):
        assert bytes(rig.dma[off:off + 4096]) == pattern(b)
    assert rig.ctrl.stats["internal_errors"] == 0


def test_batch_of_writes_then_reads_through_a_file_mapping(tmp_path):
    from redleaf.drivers.nvme.store import FileBlockStore
    path = tmp_path / "img"
    store = FileBlockStore(path, size=64 * 4096)
    assert store.image is not None
    rig = Rig(disk_blocks=64, store=store, io_queue_size=16)
    bufs = np.array([rig.buf(4096)[0] for _ in range(8)], dtype=np.int64)
    for i, off in enumerate(bufs.tolist()):
        rig.dma[off:off + 4096] = pattern(50 + i)
    rig.drv.submit_batch(S.NVM_WRITE, np.arange(8, dtype=np.uint64) * 3, bufs)
    _o, offs, status = run(rig)
    assert offs.size == 8 and not status.any()
    rig.drv.submit_flush("f")
    rig.drv.ring()
    rig.ctrl.process()
    assert rig.drv.reap() == [("f", 0)]
    store.close()
    with open(path, "rb") as f:                             # in the file, as pwritev would
        img = f.read()
    for i in range(8):
        assert img[i * 3 * 4096:(i * 3 + 1) * 4096] == pattern(50 + i)


def test_fault_injection_takes_the_path_that_can_fail():
    store = MemoryBlockStore(64 * 4096)
    rig = Rig(disk_blocks=64, store=store)
    bufs = np.array([rig.buf(4096)[0] for _ in range(5)], dtype=np.int64)
    store.fail_reads = True
    rig.drv.submit_batch(S.NVM_READ, np.arange(5, dtype=np.uint64), bufs)
    _o, offs, status = run(rig)
    assert offs.size == 5 and (status == S.ST_UNRECOVERED_READ).all()


def test_a_device_completing_a_command_twice_is_counted_not_passed_on():
    rig = Rig(io_queue_size=16)
    d = rig.drv
    bufs = np.array([rig.buf(4096)[0] for _ in range(4)], dtype=np.int64)
    d.submit_batch(S.NVM_READ, np.arange(4, dtype=np.uint64), bufs)
    d.ring()
    rig.ctrl.process()
    # a misbehaving device: post a copy of the first completion after the real ones
    cq = rig.ctrl._cqs[1]
    dw = cq.dw
    dw[cq.tail, 2] = dw[0, 2]
    dw[cq.tail, 3] = (int(dw[0, 3]) & ~(1 << 16)) | (cq.phase << 16)
    _o, offs, status = d.reap_arrays()
    assert sorted(offs.tolist()) == sorted(bufs.tolist())
    assert d.spurious == 1


# ------------------------------------------------------------------ one implementation per command
_BLOCKS = 64


def _cmd(rig: Rig, bufs: list[int]):
    """A strategy for one I/O command: mostly plausible Reads and Writes, with every
    way `_io` can refuse one (NSID, flags, FUA, LBA range, MDTS, PRP alignment, PRP2
    and PRP lists, buffers outside the DMA window) and other opcodes."""
    from hypothesis import strategies as st

    prp = st.one_of(st.sampled_from(bufs), st.sampled_from(bufs).map(lambda b: b + 512),   # PRP2 / list
                    st.sampled_from(bufs).map(lambda b: b + 2),                           # misaligned
                    st.sampled_from([0, rig.dma_base - 4096, rig.dma_limit, 1 << 40, 2**63, 2**64 - 4096]))
    return st.tuples(
        st.sampled_from([S.NVM_READ, S.NVM_WRITE, S.NVM_READ, S.NVM_WRITE, S.NVM_FLUSH,
                         S.NVM_WRITE_ZEROES, 0x7F]),
        st.sampled_from([0, 0, 0, 1, 0x40]),                       # flags
        st.sampled_from([1, 1, 1, 0, 2, 0xFFFFFFFF]),              # nsid
        prp,
        st.integers(0, _BLOCKS + 2) | st.sampled_from([2**32 - 1]),   # slba low
        st.sampled_from([0, 0, 0, 1, 2**31, 2**32 - 1]),           # slba high
        st.sampled_from([0, 0, 0, 1, 3, 200]),                     # nlb - 1
        st.sampled_from([0, 0, S.RW_FUA, S.RW_LR]),
        st.integers(0, 2**32 - 1))                                  # data seed


def _replay(batches, vec_min: int, fail: str | None, lba_shift: int = 12):
    rig = Rig(disk_blocks=_BLOCKS, io_queue_size=32, lba_shift=lba_shift)
    rig.ctrl.vec_min = vec_min
    store = rig.store
    store.buf[:] = np.random.default_rng(7).bytes(len(store.buf))
    bufs = [rig.buf(8192)[0] for _ in range(8)]
    # a PRP list page for the commands whose buffer spans pages: entries point at bufs
    lst, lmv = rig.buf(4096)
    lmv[:64] = np.array(bufs, dtype="<u8").tobytes()
    got = []
    for batch in batches:
        for opc, flags, nsid, prp1, lo, hi, n1, c12b, seed in batch:
            off = prp1 - (prp1 % 4096) if rig.dma_base <= prp1 < rig.dma_limit else None
            if off is not None and opc == S.NVM_WRITE:
                rig.dma[off:off + 4096] = np.random.default_rng(seed).bytes(4096)
            rig.drv.submit_raw(len(got), opc, nsid=nsid, flags=flags, prp1=prp1,
                               prp2=lst if n1 > 1 else bufs[seed % 8], cdw10=lo, cdw11=hi,
                               cdw12=n1 | c12b)
            got.append(None)
        store.fail_reads = fail == "read"
        store.fail_writes = fail == "write"
        rig.drv.ring()
        rig.ctrl.process()
        got[-len(batch):] = sorted(rig.drv.reap())
    st_ = dict(rig.ctrl.stats)
    return got, bytes(store.buf), bytes(rig.dma_buf), st_, store.flushes


def test_the_batch_path_gives_what_the_per_command_path_gives():
    """Whatever a batch holds, executing it vectorised (`_run_io_batch`, vec_min 1)
    and one command at a time through `_io` (`_run_sq`) gives the same completions
    (status per command), disk contents, DMA memory (data and CQ entries), counters
    and flushes -- with the store working and with its reads or writes failing."""
    from hypothesis import given, settings, strategies as st

    probe = Rig(disk_blocks=_BLOCKS, io_queue_size=32)
    bufs = [probe.buf(8192)[0] for _ in range(8)]    # the same addresses _replay allocates

    @given(st.lists(st.lists(_cmd(probe, bufs), min_size=1, max_size=20), min_size=1, max_size=4),
           st.sampled_from([None, None, "read", "write"]))
    @settings(max_examples=150, deadline=None)
    def check(batches, fail):
        assert _replay(batches, 1, fail) == _replay(batches, 10**9, fail)

    check()


def test_the_batch_path_gives_what_the_per_command_path_gives_on_long_random_runs():
    """The same comparison on seeded random batches of up to 31 commands; half of
    them homogeneous (one opcode, NSID, flags, block count, FUA) but for LBAs and
    buffers, and sometimes one odd command or field among them."""
    rng = np.random.default_rng(12)
    probe = Rig(disk_blocks=_BLOCKS, io_queue_size=32)
    bufs = [probe.buf(8192)[0] for _ in range(8)]
    bad = [probe.dma_base - 4096, probe.dma_limit, 1 << 40, 2**64 - 4096]

    def pick(choices, weights):
        return choices[rng.choice(len(choices), p=np.array(weights) / sum(weights))]

    for fail, shift in ((None, 12), ("read", 12), ("write", 12), (None, 9)):
        batches = []
        for i in range(200 if fail is None else 40):
            batch = []
            if i % 2:                               # homogeneous, maybe with one odd one
                opc = pick([S.NVM_READ, S.NVM_WRITE], [1, 1])
                n1 = pick([0, 1, 3], [4, 1, 1])
                hi = pick([0, 1], [10, 1])
                nsid, flags = pick([1, 2], [10, 1]), pick([0, 1], [10, 1])
                for _ in range(int(rng.integers(1, 32))):
                    b = bufs[int(rng.integers(8))]
                    batch.append((opc, flags, nsid, pick([b, b + 2, bad[int(rng.integers(4))]], [60, 1, 1]),
                                  int(rng.integers(0, _BLOCKS + 1)) if rng.random() < 0.99 else _BLOCKS,
                                  hi, n1, 0, int(rng.integers(2**32))))
                if rng.random() < 0.3:
                    j = int(rng.integers(len(batch)))
                    batch[j] = (batch[j][0], 0, 2) + batch[j][3:] if rng.random() < 0.5 else \
                        (S.NVM_FLUSH,) + batch[j][1:]
                batches.append(batch)
                continue
            for _ in range(int(rng.integers(1, 32))):
                b = bufs[int(rng.integers(8))]
                batch.append((
                    pick([S.NVM_READ, S.NVM_WRITE, S.NVM_FLUSH, S.NVM_WRITE_ZEROES, 0x7F], [10, 10, 1, 1, 1]),
                    pick([0, 1], [20, 1]), pick([1, 0, 2], [20, 1, 1]),
                    pick([b, b + 512, b + 2, bad[int(rng.integers(4))]], [20, 2, 1, 1]),
                    int(rng.integers(0, _BLOCKS + 2)), pick([0, 1, 2**32 - 1], [20, 1, 1]),
                    pick([0, 1, 3, 200], [20, 2, 1, 1]), pick([0, S.RW_FUA, S.RW_LR], [20, 1, 1]),
                    int(rng.integers(2**32))))
            batches.append(batch)
        assert _replay(batches, 1, fail, shift) == _replay(batches, 10**9, fail, shift), (fail, shift)
