"""The write-ahead log: group commit, the commit protocol, recovery, bounds."""

import pytest

from redleaf.rv6.fs.bcache import BufCache
from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.format import MAX_LOG_BLOCKS, MAXOPBLOCKS, Superblock, pack_log_header, unpack_log_header
from redleaf.rv6.fs.log import Log, LogOverflow

from .conftest import new_disk


def _log(group=True, log_blocks=None):
    d = new_disk(log_blocks=log_blocks, record=True)
    sb = Superblock.unpack(d.read_block(1), d.nblocks)
    c = BufCache(d, sb.logsize + 64)
    return d, sb, c, Log(d, c, sb, group)


def _change(c, log, bno, byte):
    with c.block(bno) as b:
        b.data[0] = byte
        log.write(b)


def test_commit_follows_the_protocol_with_the_header_as_commit_point():
    d, sb, c, log = _log(group=False)
    d.start_recording()
    home = sb.datastart + 5
    with log.op():
        _change(c, log, home, 0xAB)
        _change(c, log, home, 0xAC)       # absorbed: one log slot
    ev = d.events
    kinds = [e[0] if e[0] == "f" else ("hdr" if e[1] == sb.logstart else
                                        "log" if e[1] < sb.inodestart else "home") for e in ev]
    assert kinds == ["log", "f", "hdr", "f", "home", "f", "hdr", "f"]
    assert unpack_log_header(ev[2][2], sb) == [home]       # the commit point names the block
    assert unpack_log_header(ev[6][2], sb) == []           # then the log is emptied
    assert d.read_block(home)[0] == 0xAC and log.commits == 1


def test_group_commit_waits_until_the_log_might_not_hold_another_op_or_force():
    d, sb, c, log = _log(group=True)
    for i in range(3):
        with log.op():
            _change(c, log, sb.datastart + 100 + i, i + 1)
    assert log.commits == 0 and log.pending == 3
    assert d.read_block(sb.datastart + 100)[0] == 0    # nothing home yet
    log.force()
    assert log.commits == 1 and d.read_block(sb.datastart + 102)[0] == 3
    # filling the log: a commit happens before an op could overflow it
    n = 0
    while log.commits == 1:
        with log.op():
            _change(c, log, sb.datastart + 10 + n, 1)
        n += 1
    assert n == sb.logsize - MAXOPBLOCKS + 1


def test_recovery_installs_a_committed_transaction_and_ignores_an_uncommitted_one():
    d, sb, c, log = _log(group=False)
    base = d.start_recording()
    with log.op():
        _change(c, log, sb.datastart + 1, 9)
    ev = d.events
    # crash right after the commit point: header durable, homes not written
    img = MemDisk.crash_image(base, ev, 4)
    d2 = MemDisk(d.nblocks, img)
    assert d2.read_block(sb.datastart + 1)[0] == 0
    log2 = Log(d2, BufCache(d2, 200), sb)
    assert log2.recover() == 1
    assert d2.read_block(sb.datastart + 1)[0] == 9
    assert unpack_log_header(d2.read_block(sb.logstart), sb) == []
    # crash before the commit point: the log data is there, the header is empty
    d3 = MemDisk(d.nblocks, MemDisk.crash_image(base, ev, 2))
    assert Log(d3, BufCache(d3, 200), sb).recover() == 0
    assert d3.read_block(sb.datastart + 1)[0] == 0


def test_an_op_over_its_budget_is_a_bug_reported_as_overflow():
    d, sb, c, log = _log(group=True)
    with pytest.raises(LogOverflow):
        with log.op():
            for i in range(MAXOPBLOCKS + 1):
                _change(c, log, sb.datastart + i, 1)
    # it changed blocks and failed half-way: the transaction is dropped, the log stops
    assert log.failed and log.pending == 0
    with pytest.raises(FsError, match="stopped"):
        with log.op():
            pass


def test_a_caller_error_before_any_change_leaves_the_log_working():
    d, sb, c, log = _log()
    with pytest.raises(FsError):
        with log.op():
            raise FsError(2, "no such file")
    assert not log.failed and log.outstanding == 0


def test_change_outside_an_op_is_refused():
    d, sb, c, log = _log()
    with c.block(sb.datastart) as b:
        with pytest.raises(RuntimeError, match="outside an operation"):
            log.write(b)


def test_header_block_numbers_fit_the_largest_log():
    sb = Superblock.geometry(100000, 64, MAX_LOG_BLOCKS)
    homes = list(range(sb.datastart, sb.datastart + sb.logsize))
    assert unpack_log_header(pack_log_header(homes), sb) == homes
