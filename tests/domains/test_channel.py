import os

from redleaf.domains import channel as chan


def make():
    buf = memoryview(bytearray(chan.channel_size(1024)))
    chan.init_channel(buf, caller=5, callee=7, payload=1024)
    return buf, chan.Channel(buf, 1), chan.Channel(buf, 1)


def test_request_response_roundtrip():
    buf, caller, callee = make()
    assert callee.pending_request() is None
    seq = caller.post_request(b"hello")
    assert bytes(callee.pending_request()) == b"hello"
    assert callee.pending_request() is None
    assert not caller.response_ready(seq)
    callee.post_response(chan.OK, b"world")
    assert caller.response_ready(seq)
    kind, data = caller.read_response()
    assert kind == chan.OK and bytes(data) == b"world"
    assert (caller.caller, caller.callee) == (5, 7)


def test_crash_completes_the_inflight_call():
    buf, caller, callee = make()
    seq = caller.post_request(b"x")
    assert chan.fail_inflight(buf)
    assert caller.response_ready(seq)
    assert caller.read_response()[0] == chan.CRASHED
    assert caller.state == chan.CALLEE_DEAD


def test_no_inflight_call_means_nothing_to_fail():
    buf, caller, callee = make()
    assert not chan.fail_inflight(buf)


def test_garbage_lengths_are_bounded():
    buf, caller, callee = make()
    # a misbehaving caller writes an absurd length
    chan._U32.pack_into(buf, chan.REQ_LEN, 1 << 30)
    chan._U64.pack_into(buf, chan.REQ_SEQ, 1)
    req = callee.pending_request()
    assert len(req) <= 1024
    chan._LEN_KIND.pack_into(buf, chan.RESP_LEN, 1 << 30, chan.OK)
    chan._U64.pack_into(buf, chan.RESP_SEQ, 1)
    kind, data = caller.read_response()
    assert kind == chan.REJECTED and len(data) == 0


def test_oversized_request_is_refused_before_writing():
    buf, caller, callee = make()
    import pytest

    with pytest.raises(OverflowError):
        caller.post_request(b"x" * 2000)
    assert callee.pending_request() is None


def test_the_ends_come_from_the_supervisor_not_from_the_header():
    """Found by the channel fuzzer (crashtest/fuzz/channel.py): a caller that rewrote the
    CALLER word before the callee mapped the channel made the callee ring the doorbell
    of domain 4294967294, which does not exist, and die."""
    buf = memoryview(bytearray(chan.channel_size(1024)))
    chan.init_channel(buf, caller=5, callee=7, payload=1024)
    chan._U32.pack_into(buf, chan.CALLER, 0xFFFFFFFE)      # the caller scribbles the header
    chan._U32.pack_into(buf, chan.CALLEE, 1)
    callee = chan.Channel(buf, 1, caller=5, callee=7)
    assert (callee.caller, callee.callee) == (5, 7)


def _maps_tag(tag: str) -> bool:
    with open("/proc/self/maps") as fh:
        return any(f"redleaf-chan-{tag}" in line for line in fh)


def test_a_released_segment_is_unmapped_while_a_view_of_it_lives_on():
    """A view a traceback keeps (a reply's frame) must not keep a closed channel's
    memory mapped: release_segment gives the pages back at once, and the view reads
    a closed channel instead of dangling."""
    desc, fd, buf = chan.create_segment(chan.channel_size(1024))
    os.close(fd)
    tag = desc.rsplit("/", 1)[1]
    chan.init_channel(buf, caller=5, callee=7, payload=1024)
    ch = chan.Channel(buf, 1)
    kept = buf[chan.HEADER:chan.HEADER + 16]  # as a reply view in a frame would be
    buf[chan.HEADER] = 7
    assert _maps_tag(tag)
    chan.release_segment(buf)
    assert not _maps_tag(tag)
    assert ch.state == chan.CLOSED
    assert kept[0] == 0  # fresh memory: nothing of the channel's is left readable
    kept[0] = 9  # and writing to it goes nowhere, harmlessly
    chan.release_segment(buf)  # twice is harmless
    chan.release_segment(memoryview(bytearray(4096)))  # not a mapping of ours: left alone
