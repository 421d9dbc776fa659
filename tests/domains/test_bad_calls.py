"""A misbehaving attached client cannot hurt the callee through its channel.

Raw payloads no proxy would send (garbage, unknown methods, forged and stale RRefs)
are tested between two domains in both placements in test_placed_calls.py; what is
left here is specific to a channel (its mapped buffer) and to attached clients."""

import numpy as np
import pytest

from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo


def test_a_peer_scribbling_on_the_channel_cannot_crash_the_callee(echo_instance):
    """The channel is mapped writable by the caller: it can write anything anywhere in
    it, including the words the supervisor wrote.  It may break its own channel, but
    the callee must survive and keep serving everyone else."""
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    rng = np.random.default_rng(7)
    inst.request("load", name="echo2", target="redleaf.domains.builtin.echo:EchoDomain", restart="permanent",
                 config={}, uses=[], shadow=False)
    with inst.attach() as bad:
        e = bad.lookup("echo", Echo)
        other = bad.lookup("echo2", Echo)  # echo2 is a well-behaved caller of echo
        assert e.inc(1) == 2
        ch = e._rl_link.ch
        for i in range(200):
            if i % 2:  # whole-buffer garbage
                ch.buf[:] = rng.integers(0, 256, len(ch.buf), dtype=np.uint8).tobytes()
            else:  # a plausible header: huge length, next sequence number, random payload
                ch.buf[chan.PAYLOAD + 8:] = rng.integers(0, 256, len(ch.buf) - chan.PAYLOAD - 8, dtype=np.uint8).tobytes()
                ch.buf[chan.REQ_LEN:chan.REQ_LEN + 4] = int(rng.integers(0, 1 << 32)).to_bytes(4, "little")
                ch.buf[chan.REQ_SEQ:chan.REQ_SEQ + 8] = (ch.seq + 1 + i).to_bytes(8, "little")
            e._rl_link.waker.wake()
            assert other.call_back("echo", i) == i + 2
    st = inst.status()
    assert st["echo"]["pid"] == pid and st["echo"]["state"] == "running"
    with inst.attach() as d:
        assert d.lookup("echo", Echo).inc(5) == 6


def test_a_second_attach_from_one_process_is_refused_clearly(echo_instance):
    from redleaf.domains import ControlError

    with echo_instance.attach():
        with pytest.raises(ControlError, match="already attached"):
            echo_instance.attach()
