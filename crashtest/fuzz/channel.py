"""Fuzz target `channel`: a caller writing garbage into its own call channel.

An attached client holds a channel to the echo domain (domains/channel.py: a memfd
only the two parties map; the caller may write any byte of it).  Each input, one of:
- header words set to random or boundary values (request length and sequence number,
  the callee's response words, the supervisor's state, caller and callee ids, payload
  size, the mapped flags), then the callee woken;
- a payload of random bytes or of msgpack calls of wrong shapes, with a length up to
  2**32 - 1 and a sequence number just ahead, far ahead or behind, then woken;
- a real call through the (possibly broken) channel with a short deadline: it must
  answer, or fail with a clear RpcError to this caller (a timeout is reported as a hang,
  which the supervisor must verify before it kills anyone: echo is not hung).
After every input an innocent caller (the domain echo2, calling echo through its own
channel) must be served, and echo must run under its first pid; at the end
`heap --check` is clean.  An input is *refused* when the callee rejected or ignored the
garbage or the caller's own call failed cleanly, *accepted* when it was answered.

May call: supervisor.instance (run() starts its own instance), domains (attach, the
Echo builtin, channel layout, errors); msgpack.
"""

from __future__ import annotations

import random
import struct
import time

import msgpack

from redleaf.domains import channel as chan
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.errors import DomainCrashed, RpcError
from redleaf.domains.interface import spec_of

from .harness import check_heap, drive, on_instance
from .tally import Tally

MANIFEST = """
[heap]
size = "16MiB"
records = 8192

[supervisor]
watchdog_s = 2.0

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"

[[domain]]
name = "echo2"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
uses = ["echo"]
"""
#: the same two domains sharing one host process (isolation = "language", DESIGN 7a):
#: the caller's garbage then reaches the group's dispatch
GROUPED_MANIFEST = MANIFEST.replace('restart = "permanent"\n', 'restart = "permanent"\ngroup = "g"\n')
CHECK_EVERY = 20
ANSWER_S = 1.0       # how long the fuzzer waits to see whether the callee answered garbage
CALL_S = 1.0         # the deadline of the fuzzer's own calls through the scribbled channel
_INC = spec_of(Echo).by_index
_IDX = {m.name: m.index for m in _INC}
_FIELDS = [("req_len", chan.REQ_LEN, "<I"), ("req_seq", chan.REQ_SEQ, "<Q"), ("resp_len", chan.RESP_LEN, "<I"),
           ("resp_kind", chan.RESP_KIND, "<I"), ("resp_seq", chan.RESP_SEQ, "<Q"), ("state", chan.STATE, "<I"),
           ("caller", chan.CALLER, "<I"), ("callee", chan.CALLEE, "<I"), ("payload", chan.PAYLOAD, "<I"),
           ("caller_mapped", chan.CALLER_MAPPED, "<I"), ("callee_mapped", chan.CALLEE_MAPPED, "<I")]


def _value(rng: random.Random, fmt: str, cur: int) -> int:
    top = (1 << 64) - 1 if fmt == "<Q" else (1 << 32) - 1
    v = rng.choice([0, 1, 2, 3, 4, top, top - 1, cur + 1, cur - 1, cur + 1000, rng.randrange(top + 1)])
    return min(max(v, 0), top)


def _garbage_payload(rng: random.Random) -> bytes:
    k = rng.randrange(5)
    if k == 0:
        return rng.randbytes(rng.randrange(200))
    if k == 1:
        return msgpack.packb([rng.randrange(-5, 40), [rng.randrange(-3, 3) for _ in range(rng.randrange(4))]])
    if k == 2:
        return msgpack.packb([_IDX["inc"], [rng.choice([1, "x", None, 2 ** 64 - 1, [1], {"a": 1}])]])
    if k == 3:
        return msgpack.packb([_IDX[rng.choice(["roundtrip", "checksum", "pair_vecs"])],
                              [rng.randrange(2 ** 64) for _ in range(rng.randrange(3))]])
    return b"\xc1" * rng.randrange(1, 50)


class ChannelFuzzer:
    def __init__(self, client, inst, tally: Tally):
        self.d = client
        self.inst = inst
        self.t = tally
        self.echo = client.lookup("echo", Echo)
        self.other = client.lookup("echo2", Echo)     # an innocent caller of echo
        self.link = self.echo._rl_link
        self.n = 0

    def _chan(self):
        self.link.peer_for_call()                      # reconnects a channel the fuzzer broke
        return self.link.ch

    def one(self, rng: random.Random) -> None:
        k = rng.randrange(10)
        if k < 4:
            self.scribble_header(rng)
        elif k < 8:
            self.scribble_request(rng)
        else:
            self.call(rng)
        self.innocent()

    def _wait_answer(self, ch, seq: int) -> tuple[str, str] | None:
        """The callee's answer to request `seq`: ('refused'|'accepted', why), None if it
        never answered (it ignored the garbage)."""
        deadline = time.monotonic() + ANSWER_S
        while time.monotonic() < deadline:
            if struct.unpack_from("<Q", ch.buf, chan.RESP_SEQ)[0] == seq:
                n, kind = struct.unpack_from("<II", ch.buf, chan.RESP_LEN)
                if kind == chan.OK:
                    return "accepted", "answered"
                body = bytes(ch.buf[ch.resp_off:ch.resp_off + min(n, ch.payload, 200)])
                return "refused", f"kind {kind}: {body[:120]!r}"
            time.sleep(0.002)
        return None

    def scribble_header(self, rng: random.Random) -> None:
        ch = self._chan()
        names = []
        for _ in range(rng.randint(1, 3)):
            name, off, fmt = rng.choice(_FIELDS)
            cur = struct.unpack_from(fmt, ch.buf, off)[0]
            struct.pack_into(fmt, ch.buf, off, _value(rng, fmt, cur))
            names.append(name)
        self.link.waker.wake()
        seq = struct.unpack_from("<Q", ch.buf, chan.REQ_SEQ)[0]
        got = self._wait_answer(ch, seq) if "req_seq" in names else None
        self.link.broken = True                        # the next call starts on a fresh channel
        self._count(got, f"header {', '.join(names)}")

    def scribble_request(self, rng: random.Random) -> None:
        ch = self._chan()
        body = _garbage_payload(rng)
        n = min(len(body), ch.payload)
        ch.buf[ch.req_off:ch.req_off + n] = body[:n]
        ln = rng.choice([n, n, 0, n + 1, ch.payload, ch.payload + 1, (1 << 32) - 1])
        step = rng.choice([1, 1, 1, 2, 1000, 0])
        seq = ch.seq + step
        struct.pack_into("<I", ch.buf, chan.REQ_LEN, ln)
        struct.pack_into("<Q", ch.buf, chan.REQ_SEQ, seq)
        ch.seq = max(ch.seq, seq)
        self.link.waker.wake()
        got = self._wait_answer(ch, seq)
        if got is None or rng.random() < 0.3:
            self.link.broken = True
        self._count(got, f"request of {ln} bytes, seq +{step}")

    def call(self, rng: random.Random) -> None:
        """A real call on whatever the channel is now."""
        payload = msgpack.packb([_IDX["inc"], [41]])
        try:
            self.link.peer_for_call()
            kind, resp = self.link.invoke(payload, CALL_S, None)
        except DomainCrashed as e:
            self.t.crash(f"a call after the garbage: the callee crashed: {e}")
            return
        except RpcError as e:
            self.link.broken = True
            self.t.refuse(f"own call failed cleanly: {type(e).__name__}: {e}"[:300], "own call failed")
            return
        if kind == chan.OK and msgpack.unpackb(bytes(resp)) == 42:
            self.t.accept("call answered")
        elif kind == chan.CRASHED:
            self.t.crash("a call after the garbage: the channel says the callee crashed")
        else:
            self.link.broken = True
            self.t.refuse(f"own call: kind {kind}", "own call failed")

    def _count(self, got, what: str) -> None:
        if got is None:
            self.t.refuse(f"{what}: ignored", "ignored")
        elif got[0] == "accepted":
            self.t.accept("answered")
        else:
            self.t.refuse(f"{what}: {got[1]}"[:300], "rejected")

    def innocent(self) -> None:
        self.n += 1
        try:
            ok = self.other.call_back("echo", self.n) == self.n + 2
        except RpcError as e:
            self.t.crash(f"an innocent caller of echo failed: {type(e).__name__}: {e}", counted=False)
            return
        if not ok:
            self.t.crash("an innocent caller of echo got a wrong answer", counted=False)


def fuzz(inst, count: int, seed: int, tally: Tally | None = None) -> Tally:
    tally = tally or Tally("channel", seed)
    rng = random.Random(seed)
    with inst.attach() as d:
        f = ChannelFuzzer(d, inst, tally)
        drive(inst, tally, count, lambda: f.one(rng), "echo", CHECK_EVERY)
    check_heap(inst, tally)
    return tally


def run(count: int, seed: int) -> dict:
    return on_instance("channel", MANIFEST, count, seed, fuzz)
