"""A call channel is mapped only by its two parties (issue 13, finding 8; DESIGN §5a).

Channels used to be objects in the exchange heap, which every domain maps read-write,
so any domain could forge replies in another pair's channel.  Now each channel is a
segment of its own that only its two parties are told about and that the supervisor
unlinks once both have mapped it; and a party that writes garbage into its own
channel fails only its own call.
"""

import os
import time

import pytest

from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.errors import CallRejected
from redleaf.domains.interface import spec_of
from redleaf.domains.proxy import make_proxy
from tests.conftest import process_running


def _memfd_channels(pid: int) -> list[str]:
    """The channel segments process `pid` holds open (not mapped: open descriptors)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:redleaf-chan-"):
            out.append(target)
    return out


def test_a_third_domain_can_neither_find_nor_map_a_channel(echo_instance):
    inst = echo_instance
    sup = inst.request("ping")["pid"]
    marker = os.urandom(24)
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        assert e.echo(marker) == marker
        # the request and the reply went through no memory a third domain maps: the
        # exchange heap (every domain's mapping) never held the bytes
        with open(inst.paths.heap, "rb") as f:
            assert marker not in f.read()
        # a channel whose descriptor we know (we are its caller): once both parties
        # have mapped it, the descriptor opens nothing, for us or for anyone else
        spec = spec_of(Echo)
        r = d.ctl.request("lookup", name="echo", interface=spec.name, fingerprint=spec.fingerprint)
        ch = d.rt.open_channel(r["channel"], r["segment"], r["size"], caller=d.domain_id, callee=r["callee"])
        deadline = time.monotonic() + 30
        while _memfd_channels(sup):  # echo maps its end on the push; then the supervisor lets go
            assert time.monotonic() < deadline, f"the supervisor still holds {_memfd_channels(sup)}"
            time.sleep(0.005)
        with pytest.raises(chan.SegmentError, match="gone"):
            chan.map_segment(r["segment"], r["size"])
        # a descriptor that is not one, or another tag at a real fd, is refused
        with pytest.raises(chan.SegmentError):
            chan.map_segment("../../etc/passwd", 4096)
        pid, num, _tag = r["segment"].split("/")
        with pytest.raises(chan.SegmentError):
            chan.map_segment(f"{pid}/{num}/{'0' * 32}", r["size"])
        d.rt.close_channel(ch)
        assert e.inc(1) == 2


def test_garbage_a_caller_writes_into_its_own_channel_fails_only_that_call(echo_instance):
    inst = echo_instance
    before = inst.status()["echo"]
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        assert e.inc(1) == 2
        link = next(lk for (name, _i, _r), lk in d.rt.links.items() if name == "echo")
        ch = link.ch
        seq = ch.post_request(b"\xc1 not msgpack \xff\xff")
        link.waker.wake()
        deadline = time.monotonic() + 30
        while not ch.response_ready(seq):
            assert time.monotonic() < deadline, "echo never answered the garbage request"
            time.sleep(0.001)
        kind, _payload = ch.read_response()
        assert kind == chan.REJECTED
        assert e.inc(2) == 3  # the same channel goes on working
    after = inst.status()["echo"]
    assert after["state"] == "running" and after["pid"] == before["pid"] and process_running(before["pid"])


class _GarbageLink:
    """The caller's end of a channel whose callee answers with `kind` and `payload`."""

    local = False

    def __init__(self, kind, payload):
        self.kind, self.payload = kind, payload
        self.name = "garbage"

    def invoke(self, payload, timeout, ctx):
        return self.kind, memoryview(self.payload)


@pytest.mark.parametrize("kind, payload", [
    (chan.OK, b"\xc1\xc1"),  # not msgpack
    (chan.OK, b"\x92\x01"),  # truncated
    (77, b""),  # no such kind
])
def test_garbage_a_callee_writes_as_its_reply_is_the_callers_clear_error(kind, payload):
    p = make_proxy(Echo, _GarbageLink(kind, payload))
    with pytest.raises(CallRejected, match="malformed reply|unknown kind"):
        p.inc(1)
