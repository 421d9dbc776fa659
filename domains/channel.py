"""A shared-memory channel for one caller/callee pair: a request and a response mailbox.

A caller has at most one call in flight on a channel (calls are synchronous; batching
happens inside a call through RRefDeques), so each direction needs a single slot,
not a ring.  Every field has one writer:

    caller : req_len, req_seq, the request payload
    callee : resp_len, resp_kind, resp_seq, the response payload
    supervisor : state, and resp_* once the callee is dead

A writer publishes the payload, then the length, then the sequence number, and a
reader loads the sequence number first.  Memory ordering: x86-64 only.  x86-64 is
TSO: stores become visible in program order and loads are not reordered with other
loads, so a reader that sees the new sequence number sees the payload, with no
fence.  A weakly ordered CPU (aarch64, POWER) may make the sequence-number store
visible before the payload stores, and the reader's loads may pass each other, so
both sides would need a release/acquire fence here.  Pure Python has none: the
stores are memcpys inside CPython (slice assignment, struct.pack_into), and
doorbell.fence() (an uncontended lock) is an acquire followed by a release, which
on aarch64 does not keep an earlier store before a later one.  Rather than claim a
portability we cannot show, the channel refuses to load on anything but x86-64
(the NVMe completion phase tag and the heap's single-store records rely on TSO as
well).  The channel memory is an object in the exchange heap owned by the
supervisor, released when either end dies.  Nothing here trusts the peer: lengths
and kinds are bounds-checked before use.
"""

from __future__ import annotations

import platform
import struct

from .doorbell import fence

if platform.machine().lower() not in ("x86_64", "amd64"):
    raise ImportError(f"redleaf's shared-memory channels rely on x86-64 (TSO) store order; "
                      f"this machine is {platform.machine() or 'unknown'} (see redleaf.domains.channel)")

REQ_LEN = 0  # u32 (+4 pad), caller
REQ_SEQ = 8  # u64, caller
RESP_LEN = 64  # u32, callee
RESP_KIND = 68  # u32, callee
RESP_SEQ = 72  # u64, callee
STATE = 128  # u32, supervisor
CALLER = 132  # u32, supervisor (at creation)
CALLEE = 136  # u32, supervisor (at creation)
PAYLOAD = 140  # u32 payload area size, supervisor (at creation)
HEADER = 192

# response kinds
OK = 1
DECLARED = 2  # a declared exception; payload = (index, args)
REJECTED = 3  # callee refused the request; payload = (error kind, message)
CRASHED = 4  # written by the supervisor: the callee died with this call in flight

# channel states
OPEN = 0
CALLEE_DEAD = 1
CALLER_DEAD = 2
CLOSED = 3

DEFAULT_PAYLOAD = 64 * 1024 + 1024

_LEN_KIND = struct.Struct("<II")  # resp_len, resp_kind
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HDR_INIT = struct.Struct("<IIII")


def channel_size(payload: int = DEFAULT_PAYLOAD) -> int:
    return HEADER + 2 * payload


def init_channel(buf: memoryview, caller: int, callee: int, payload: int = DEFAULT_PAYLOAD) -> None:
    """Supervisor side: zero a fresh channel and stamp its ends."""
    buf[:HEADER] = bytes(HEADER)
    _HDR_INIT.pack_into(buf, STATE, OPEN, caller, callee, payload)


def set_state(buf: memoryview, state: int) -> None:
    _U32.pack_into(buf, STATE, state)


def fail_inflight(buf: memoryview) -> bool:
    """Supervisor side, callee dead: complete any in-flight call with CRASHED.

    Returns True when a call was in flight (its caller must be woken)."""
    # Mark first, fence, then look: a caller that posts after our look has fenced
    # after its post and sees the mark (Runtime.wait_response), so no request is
    # left unanswered.
    _U32.pack_into(buf, STATE, CALLEE_DEAD)
    fence()
    req_seq = _U64.unpack_from(buf, REQ_SEQ)[0]
    resp_seq = _U64.unpack_from(buf, RESP_SEQ)[0]
    if req_seq != resp_seq:
        _LEN_KIND.pack_into(buf, RESP_LEN, 0, CRASHED)
        _U64.pack_into(buf, RESP_SEQ, req_seq)  # last, as in post_response
        return True
    return False


class Channel:
    """One end's view of a channel.  `seq` is the caller's (or callee's) cursor."""

    __slots__ = ("buf", "chan_id", "caller", "callee", "payload", "req_off", "resp_off", "seq")

    def __init__(self, buf: memoryview, chan_id: int):
        self.buf = buf
        self.chan_id = chan_id
        _state, self.caller, self.callee, self.payload = _HDR_INIT.unpack_from(buf, STATE)
        if self.payload <= 0 or HEADER + 2 * self.payload > len(buf):
            raise ValueError(f"channel {chan_id}: corrupt header (payload {self.payload}, size {len(buf)})")
        self.req_off = HEADER
        self.resp_off = HEADER + self.payload
        # Both ends start from what is already there: the callee from the last
        # request it answered, the caller from the last response it got.
        self.seq = _U64.unpack_from(buf, RESP_SEQ)[0]

    @property
    def state(self) -> int:
        return _U32.unpack_from(self.buf, STATE)[0]

    # -- caller side -------------------------------------------------------------
    def post_request(self, payload: bytes) -> int:
        n = len(payload)
        if n > self.payload:
            raise OverflowError(f"request of {n} bytes exceeds the channel's {self.payload}-byte payload")
        off = self.req_off
        self.buf[off:off + n] = payload
        seq = self.seq + 1
        self.seq = seq
        # Two stores, length then sequence number: the sequence number publishes the
        # request.  (One 16-byte pack_into is a memcpy whose byte order is not ours
        # to choose; the reader could see the new number beside the old length.)
        _U32.pack_into(self.buf, REQ_LEN, n)
        _U64.pack_into(self.buf, REQ_SEQ, seq)
        return seq

    def response_ready(self, seq: int) -> bool:
        return _U64.unpack_from(self.buf, RESP_SEQ)[0] == seq

    def read_response(self) -> tuple[int, memoryview]:
        n, kind = _LEN_KIND.unpack_from(self.buf, RESP_LEN)  # after the caller saw RESP_SEQ
        if n > self.payload:
            return REJECTED, memoryview(b"")
        return kind, self.buf[self.resp_off:self.resp_off + n]

    # -- callee side -------------------------------------------------------------
    def pending_request(self) -> memoryview | None:
        # The sequence number first, then the length: a reader that loaded the length
        # first could pair a stale length with a new request.
        seq = _U64.unpack_from(self.buf, REQ_SEQ)[0]
        if seq <= self.seq:
            return None  # nothing new (a caller never moves its sequence number backwards)
        self.seq = seq
        n = _U32.unpack_from(self.buf, REQ_LEN)[0]
        if n > self.payload:
            return memoryview(b"\xc1")  # the caller wrote garbage; 0xc1 is never valid msgpack
        return self.buf[self.req_off:self.req_off + n]

    def post_response(self, kind: int, payload: bytes) -> None:
        n = len(payload)
        if n > self.payload:
            payload = b""
            kind, n = REJECTED, 0
        off = self.resp_off
        self.buf[off:off + n] = payload
        _LEN_KIND.pack_into(self.buf, RESP_LEN, n, kind)
        _U64.pack_into(self.buf, RESP_SEQ, self.seq)  # last: publishes the response
