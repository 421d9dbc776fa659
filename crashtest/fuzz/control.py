"""Fuzz target `control`: raw frames into a running instance's control endpoint.

What it sends (the zmq ipc ROUTER of supervisor/endpoints.py, parsed by
domains.control.decode_request and dispatched by supervisor/control.py), each input
one of:
- random bytes, and msgpack headers that claim huge arrays, maps, strings or bins;
- msgpack of the wrong shape: not a map, no or wrong version, a command that is not
  a string, unknown commands;
- every known command with a field missing or of the wrong type (with the instance
  token, so it is the parser, not the credential check, that must refuse it);
- every command, well typed, with no token, a wrong one, a token of the wrong type or
  a made-up domain credential: all refused, including shutdown, kill and load;
- huge and negative sizes in the fields the token may use (attach_nonce pids, names);
- multi-part messages, and a frame over the endpoint's size limit (zmq drops the
  peer: no reply is the clean refusal there; the supervisor must still answer);
- well-formed read-only requests (ping, status, heap, logs) with the token: accepted.

The existing tests/supervisor/test_control_fuzz.py fuzzes type-correct requests sent
with valid credentials; this one is the unauthenticated, malformed side.

Checked: every input gets a reply that is `ok` only when it should be, else a refusal
of a known kind with a message; never an InternalError, never silence.  Every
CHECK_EVERY inputs and at the end: the supervisor answers, every domain runs under
the pid it had, and `heap --check` is clean.

May call: supervisor.instance (run() starts its own instance), domains.control and
domains.paths; pyzmq, msgpack.
"""

from __future__ import annotations

import os
import random

import msgpack
import zmq

from redleaf.domains.control import COMMANDS, MAX_FRAME, PROTOCOL_VERSION

from .harness import on_instance
from .tally import Tally

#: refusal kinds the supervisor gives for bad input; anything else is a finding
CLEAR = {"AuthError", "BadRequest", "NotFound", "Conflict", "DomainUnavailable", "InterfaceMismatch",
         "NotHung", "ProtocolError", "HeapExhausted", "Exhausted", "Busy", "ValueError", "HeapError"}
#: commands the instance token may send well-formed without changing any domain
SAFE_WITH_TOKEN = ("ping", "status", "heap", "logs")
REPLY_TIMEOUT_MS = 10_000
CHECK_EVERY = 50

MANIFEST = """
[heap]
size = "16MiB"
records = 8192

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
"""

_BIG_INTS = [0, -1, 1, -(1 << 63), (1 << 64) - 1, (1 << 63) - 1, (1 << 32), -(1 << 31), 2 ** 40, os.getpid()]


def _leaf(rng: random.Random):
    k = rng.randrange(8)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.choice(_BIG_INTS) if rng.random() < 0.5 else rng.randint(-300, 300)
    if k == 3:
        return rng.random() * 10 ** rng.randint(-5, 30) * rng.choice((1, -1))
    if k == 4:
        return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(12)))
    if k == 5:
        return rng.randbytes(rng.randrange(40))
    if k == 6:
        return [_leaf(rng) for _ in range(rng.randrange(3))]
    return {str(rng.randrange(100)): _leaf(rng) for _ in range(rng.randrange(3))}


def _typed(rng: random.Random, field: str, typ):
    """A value of the type the schema asks for (so only the credential can refuse it)."""
    if typ is int:
        return rng.choice(_BIG_INTS) if rng.random() < 0.5 else rng.randint(-2, 300)
    if typ is bool:
        return rng.random() < 0.5
    if typ is str:
        return rng.choice(["echo", "nope", "", "../token", "echo.driver", "sigkill", "x" * 300])
    if typ is list:
        return [_leaf(rng) for _ in range(rng.randrange(3))]
    if typ is dict:
        return {"k": _leaf(rng)}
    return _leaf(rng)


def _wrong(rng: random.Random, typ):
    """A value that is *not* of the schema's type (bool is not an int either)."""
    while True:
        v = _leaf(rng)
        if typ is int and isinstance(v, bool):
            return v
        if not isinstance(v, typ):
            return v


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def gen_input(rng: random.Random, token: bytes) -> tuple[str, list[bytes], bool]:
    """(category, frames, may_be_accepted) of one input."""
    cmds = sorted(COMMANDS)
    k = rng.randrange(10)
    if k == 0:
        n = rng.choice([0, 1, 2, 7, 64, 1000, 60_000])
        return "random bytes", [rng.randbytes(n)], False
    if k == 1:
        # a header claiming a huge container or string, then little or nothing
        head = rng.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                           b"\xc6\xff\xff\xff\xff", b"\xc9\x7f\xff\xff\xff\x01", b"\xdc\xff\xff",
                           b"\x81\xa1v\xdd\x7f\xff\xff\xff", b"\xc1", b"\xd4\x01"])
        return "huge header", [head + rng.randbytes(rng.randrange(16))], False
    if k == 2:
        obj = rng.choice([[_leaf(rng)], _leaf(rng), "ping", 1, None, {1: 2}, {"v": 1},
                          {"v": rng.choice([0, 2, "1", None, 1.0]), "cmd": "ping", "token": token},
                          {"v": PROTOCOL_VERSION, "cmd": _leaf(rng), "token": token}])
        try:
            return "wrong shape", [_pack(obj)], False
        except (TypeError, ValueError):  # a map key msgpack itself refuses
            return "wrong shape", [b"\x80"], False
    if k == 3:
        cmd = rng.choice(["", "PING", "ping ", "shutdown\0", "__init__", "cmd_ping", "handlers",
                          "".join(chr(rng.randrange(33, 127)) for _ in range(rng.randrange(1, 20)))])
        return "unknown command", [_pack({"v": PROTOCOL_VERSION, "cmd": cmd, "rid": 1, "token": token})], False
    if k == 4:
        # a field missing or of the wrong type, with the token: the parser must refuse it
        cmd = rng.choice([c for c in cmds if COMMANDS[c]])
        fields = {f: _typed(rng, f, t) for f, t in COMMANDS[cmd].items()}
        f = rng.choice(sorted(fields))
        if rng.random() < 0.4:
            del fields[f]
        else:
            fields[f] = _wrong(rng, COMMANDS[cmd][f])
        return "wrong field", [_pack({"v": PROTOCOL_VERSION, "cmd": cmd, "rid": 2, "token": token, **fields})], False
    if k in (5, 6):
        # well typed, every command, without the right credential
        cmd = rng.choice(cmds)
        fields = {f: _typed(rng, f, t) for f, t in COMMANDS[cmd].items()}
        msg = {"v": PROTOCOL_VERSION, "cmd": cmd, "rid": 3, **fields}
        how = rng.randrange(5)
        if how == 1:
            msg["token"] = rng.randbytes(len(token))
        elif how == 2:
            msg["token"] = token[:-1] + bytes([token[-1] ^ 1])
        elif how == 3:
            msg["token"] = rng.choice([token.hex(), 0, None, [token], True])
        elif how == 4:
            msg["cred"] = rng.choice([rng.randbytes(32), b"", token, "x" * 32, 7])
        # ping and status are open to any credential, but a made-up one is refused
        return "no credential", [_pack(msg)], False
    if k == 7:
        cmd = rng.choice(["attach_nonce", "attach", "logs", "heap"])
        fields = {"attach_nonce": {"pid": rng.choice(_BIG_INTS)},
                  "attach": {"pid": rng.choice(_BIG_INTS), "nonce": rng.choice(["", "0" * 15, "x" * 4000])},
                  "logs": {"name": rng.choice(["x" * 100_000, "../../etc/passwd", "\0", "echo/../echo"])},
                  "heap": {"check": rng.random() < 0.5}}[cmd]
        # a nonce for any live process of ours is handed out (it proves nothing until
        # that process shows it in its comm), so attach_nonce may be accepted
        return "sizes", [_pack({"v": PROTOCOL_VERSION, "cmd": cmd, "rid": 4, "token": token, **fields})], \
            cmd in ("heap", "attach_nonce")
    if k == 8:
        frames = [rng.randbytes(rng.randrange(8)) for _ in range(rng.randrange(1, 4))]
        frames.append(_pack({"v": PROTOCOL_VERSION, "cmd": "ping", "rid": 5, "token": token}))
        return "multipart", frames, True
    cmd = rng.choice(SAFE_WITH_TOKEN)
    fields = {f: _typed(rng, f, t) for f, t in COMMANDS[cmd].items()}
    return "read-only", [_pack({"v": PROTOCOL_VERSION, "cmd": cmd, "rid": 6, "token": token, **fields})], True


class ControlFuzzer:
    """Sends inputs to one instance and classifies each reply into a Tally."""

    def __init__(self, inst, tally: Tally):
        self.inst = inst
        self.tally = tally
        self.token = inst.paths.read_token()
        self.ctx = zmq.Context()
        self.sock = None
        self.before = {n: r["pid"] for n, r in inst.status().items()}

    def _socket(self):
        if self.sock is None:
            self.sock = self.ctx.socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.connect(self.inst.paths.control)
        return self.sock

    def _drop_socket(self):
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def send(self, category: str, frames: list[bytes], may_accept: bool) -> None:
        t = self.tally
        sock = self._socket()
        sock.send_multipart(frames)
        if sum(map(len, frames)) > MAX_FRAME:
            # zmq's MAXMSGSIZE drops the peer: silence is the refusal; the next check
            # proves the supervisor still answers
            self._drop_socket()
            t.refuse("oversized frame: the peer was dropped", "Oversize")
            return
        if not sock.poll(REPLY_TIMEOUT_MS):
            self._drop_socket()
            t.confuse(f"{category}: no reply within {REPLY_TIMEOUT_MS / 1000:g}s to {frames[-1][:80]!r}")
            return
        reply = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
        if reply.get("ok") is True:
            if may_accept:
                t.accept(category)
            else:
                t.confuse(f"{category}: accepted {frames[-1][:120]!r}: {reply!r:.200}")
        elif reply.get("kind") in CLEAR and reply.get("error"):
            t.refuse(f"{reply['kind']}: {reply['error']}"[:300], reply["kind"])
        else:
            t.confuse(f"{category}: refused unclearly {frames[-1][:120]!r}: {reply!r:.300}")

    def check(self, heap: bool = False) -> list[str]:
        """What is wrong with the instance now: [] when it is whole."""
        from redleaf.domains.errors import ControlError

        try:
            now = {n: (r["pid"], r["state"]) for n, r in self.inst.status().items()}
            if heap:
                v = self.inst.request("heap", check=True)["violations"]
                if v:
                    return [f"heap --check: {v}"]
        except ControlError as e:
            return [f"the supervisor does not answer: {e}"]
        out = []
        for name, pid in self.before.items():
            got = now.get(name)
            if got is None or got != (pid, "running"):
                out.append(f"domain {name} was pid {pid}, running; now {got}")
        return out

    def close(self) -> None:
        self._drop_socket()
        self.ctx.term()


def fuzz(inst, count: int, seed: int, tally: Tally | None = None) -> Tally:
    """`count` inputs from `random.Random(seed)` into a running instance."""
    tally = tally or Tally("control", seed)
    rng = random.Random(seed)
    f = ControlFuzzer(inst, tally)
    try:
        for i in range(count):
            f.send(*gen_input(rng, f.token))
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == count:
                for problem in f.check(heap=i + 1 == count):
                    tally.crash(problem, counted=False)
                if tally.crashes:
                    break  # the instance is broken: later inputs would only repeat it
    finally:
        f.close()
    return tally


def run(count: int, seed: int) -> dict:
    """Start an echo instance, send `count` inputs, stop it; the report."""
    return on_instance("control", MANIFEST, count, seed, fuzz)
