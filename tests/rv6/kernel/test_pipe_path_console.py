"""Pipes (bounded, EOF, EPIPE), the console's queues, path resolution."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings, strategies as hs

from redleaf.rv6.kernel.console import OUT_LIMIT, Console
from redleaf.rv6.kernel.errors import WOULD_BLOCK, Rv6Error
from redleaf.rv6.kernel.path import PATH_MAX, resolve
from redleaf.rv6.kernel.pipe import Pipe


def test_pipe_blocks_when_empty_and_full_then_eof_after_last_writer():
    p = Pipe(8)
    assert p.read(4) is WOULD_BLOCK
    assert p.write(b"0123456789") == 8
    assert p.write(b"x") is WOULD_BLOCK
    assert p.read(3) == b"012"
    assert p.write(b"abcd") == 3
    p.add_writer()
    p.close_writer()
    assert p.read(100) == b"34567abc"
    assert p.read(1) is WOULD_BLOCK  # a writer is left
    p.close_writer()
    assert p.read(1) == b""


def test_pipe_write_after_last_reader_is_epipe():
    p = Pipe()
    p.write(b"unread")
    p.close_reader()
    with pytest.raises(Rv6Error) as ei:
        p.write(b"x")
    assert ei.value.errno == errno.EPIPE


@settings(max_examples=100, deadline=None)
@given(hs.lists(hs.one_of(hs.binary(max_size=40), hs.integers(1, 50)), max_size=50), hs.integers(1, 64))
def test_pipe_delivers_bytes_in_order_without_loss(ops, cap):
    p = Pipe(cap)
    sent, got = bytearray(), bytearray()
    for op in ops:
        if isinstance(op, bytes):
            n = p.write(op)
            if n is not WOULD_BLOCK:
                assert 0 <= n <= len(op)
                sent += op[:n]
            else:
                assert len(p.buf) == cap
        else:
            r = p.read(op)
            if r is not WOULD_BLOCK:
                got += r
        assert len(p.buf) <= cap
    p.close_writer()
    while (r := p.read(7)) != b"":
        got += r
    assert got == sent


def test_console_reads_a_line_at_a_time_and_bounds_output():
    c = Console()
    assert c.read(10) is WOULD_BLOCK
    c.feed(b"ls\necho hi\n")
    assert c.read(100) == b"ls\n"
    assert c.read(2) == b"ec"
    assert c.read(100) == b"ho hi\n"
    c.send_eof()
    assert c.read(5) == b""
    assert c.write(b"x" * (OUT_LIMIT + 5)) == OUT_LIMIT
    assert c.write(b"y") is WOULD_BLOCK
    assert c.drain(3) == b"xxx"
    c.hang_up()
    assert c.write(b"gone") == 4 and c.drain(10) == b""


@pytest.mark.parametrize("cwd,path,want", [
    ("/", "a", "/a"), ("/a/b", "c", "/a/b/c"), ("/a/b", "..", "/a"), ("/a", "../../..", "/"),
    ("/a", "/x/./y//z/", "/x/y/z"), ("/", ".", "/"), ("/a/b", "./c/../d", "/a/b/d"),
])
def test_resolve(cwd, path, want):
    assert resolve(cwd, path) == want


def test_resolve_refuses_bad_paths():
    for bad, err in (("", errno.ENOENT), ("a\0b", errno.EINVAL), (b"/x", errno.EINVAL),
                     ("/" + "a" * PATH_MAX, errno.ENAMETOOLONG)):
        with pytest.raises(Rv6Error) as ei:
            resolve("/", bad)
        assert ei.value.errno == err
