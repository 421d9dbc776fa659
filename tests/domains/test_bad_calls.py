"""A misbehaving caller cannot hurt the callee: raw payloads that no proxy would
send (garbage, unknown methods, forged and stale RRefs) are rejected with a clear
error, change nothing, and the callee keeps serving everyone."""

import msgpack
import numpy as np
import pytest

from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.interface import spec_of
from redleaf.shared_heap import record, u64
from redleaf.domains.marshal import rref_wire


@record
class Other:
    x: u64


def _index(name: str) -> int:
    return next(m.index for m in spec_of(Echo).by_index if m.name == name)


def _raw(proxy, payload: bytes):
    link = proxy._rl_link
    link.peer_for_call()
    return link.invoke(payload, 5.0, None)


@pytest.mark.parametrize("payload", [
    b"",
    b"\xc1",  # never-used msgpack byte
    b"\xff" * 100,
    msgpack.packb("not a tuple"),
    msgpack.packb([1]),
    msgpack.packb([10_000, []]),  # unknown method
    msgpack.packb([-1, []]),
    msgpack.packb(["inc", [1]]),  # method by name: not the wire form
])
def test_garbage_requests_are_rejected_and_the_callee_survives(echo_instance, payload):
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        kind, _resp = _raw(e, payload)
        assert kind == chan.REJECTED
        assert e.inc(1) == 2
    assert inst.status()["echo"]["pid"] == pid


def test_wrong_types_from_a_raw_caller_are_rechecked_by_the_callee(echo_instance):
    with echo_instance.attach() as d:
        e = d.lookup("echo", Echo)
        kind, resp = _raw(e, msgpack.packb([_index("inc"), ["one"]]))
        assert kind == chan.REJECTED and b"expected int" in bytes(resp)
        kind, resp = _raw(e, msgpack.packb([_index("inc"), [1, 2]]))
        assert kind == chan.REJECTED


def _forged(slot, gen, method="roundtrip"):
    return msgpack.packb([_index(method), [rref_wire(slot, gen)]])


def test_forged_and_stale_rrefs_are_rejected_and_change_nothing(echo_instance):
    inst = echo_instance
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        v = d.heap.alloc_vec(np.uint8, 256)
        v.np[:] = 9
        slot, gen, tid = v.wire()
        rec = d.heap.alloc(Other)  # a live object of another type, named below
        cases = [
            _forged(slot, gen + 1),  # stale generation
            _forged(10 ** 9, 1),  # slot out of range
            _forged(0, 0),
            msgpack.packb([_index("roundtrip"), [-1]]),
            msgpack.packb([_index("roundtrip"), [-(1 << 63)]]),
            msgpack.packb([_index("roundtrip"), [msgpack.ExtType(1, b"x" * 12)]]),
            _forged(slot, gen, "checksum"),  # a borrow that was never lent
        ]
        for payload in cases:
            kind, resp = _raw(e, payload)
            assert kind == chan.REJECTED, payload
            assert b"Ownership" in bytes(resp) or b"BadArgument" in bytes(resp), bytes(resp)
        # the caller's own object of the wrong type: refused, and it stays the caller's
        rs, rg, _t = rec.wire()
        kind, resp = _raw(e, _forged(rs, rg))
        assert kind == chan.REJECTED and b"Ownership" in bytes(resp), bytes(resp)
        assert inst.status()["echo"]["heap_objects"] == 0
        assert int(rec["x"]) == 0  # still readable: still ours
        assert int(v.np.sum()) == 9 * 256  # the caller's object is untouched and still its own
        back = e.roundtrip(v)
        assert int(back.np[0]) == 9
        back.drop()
        assert e.inc(1) == 2
    r = inst.request("heap", check=True)
    assert r["violations"] == []


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
