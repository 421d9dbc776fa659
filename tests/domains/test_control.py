import msgpack
import pytest

from redleaf.domains.control import MAX_FRAME, ProtocolError, decode_request


def req(**kw):
    base = {"v": 1, "token": b"t", "rid": 1}
    base.update(kw)
    return msgpack.packb(base, use_bin_type=True)


def test_valid_request():
    assert decode_request(req(cmd="kill", name="x", how="sigkill"))["cmd"] == "kill"


@pytest.mark.parametrize("frame, message", [
    (b"\xc1\xc1garbage", "not a msgpack"),
    (msgpack.packb([1, 2, 3]), "must be a msgpack map"),
    (msgpack.packb({"v": 2, "cmd": "ping"}), "protocol version"),
    # found by the control fuzzer (crashtest/fuzz/control.py): 1.0 == True == 1 passed
    (req(v=1.0, cmd="ping"), "protocol version"),
    (req(v=True, cmd="ping"), "protocol version"),
    (req(cmd="frobnicate"), "unknown command"),
    (req(cmd="kill", name="x"), "needs field 'how'"),
    (req(cmd="kill", name=3, how="x"), "must be str"),
    (req(cmd="lease", kind="chunks", count=True), "must be int, got bool"),
    (b"\x00" * (MAX_FRAME + 1), "exceeds"),
])
def test_malformed_requests_are_refused_with_a_reason(frame, message):
    with pytest.raises(ProtocolError, match=message):
        decode_request(frame)
