"""Identity is bound, not claimed (issue 13, findings 2, 3 and 8; DESIGN §5a).

Each test sends a hostile message with a *valid* domain credential (an attached
client's: the test process itself) and then checks that nobody else's state changed:
`status` shows every domain running under the pid it had, and what the victim owns or
serves still works.  Synchronisation is on observable events (replies, status, the
supervisor's log line about a hang report), never on sleeps.
"""

import os
import struct
import subprocess
import time

import numpy as np
import pytest

from redleaf.domains.builtin.echo import Echo
from redleaf.domains.channel import REQ_SEQ, RESP_SEQ
from redleaf.domains.control import ControlClient
from redleaf.domains.errors import ControlError
from redleaf.shared_heap import RRefVec
from tests.conftest import ECHO_MANIFEST, process_running

TWO_ECHOES = ECHO_MANIFEST + """
[[domain]]
name = "bystander"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 20
period_s = 5.0
backoff_s = 0.01
"""
_U64 = struct.Struct("<Q")


def _unchanged(inst, before: dict) -> dict:
    """Everyone in `before` still runs under the same pid (and that pid lives)."""
    st = inst.status()
    for name, row in before.items():
        if row["kind"] == "client":
            continue
        assert st[name]["state"] == "running", (name, st[name])
        assert st[name]["pid"] == row["pid"], (name, row["pid"], st[name]["pid"])
        assert process_running(row["pid"]), name
    return st


def _refused(fn, *kinds):
    with pytest.raises(ControlError) as ei:
        fn()
    assert ei.value.kind in kinds, (ei.value.kind, str(ei.value))
    return ei.value


def test_ready_and_hello_speak_only_for_the_sender(echo_instance):
    inst = echo_instance
    before = inst.status()
    echo = before["echo"]
    with inst.attach() as d:
        # ready for another id: refused; echo keeps its exports
        _refused(lambda: d.ctl.request("ready", domain_id=echo["id"], exports=[]), "AuthError")
        # a client is no device: it cannot describe one
        _refused(lambda: d.ctl.request("ready", exports=[], device={"bar": 0, "bar_size": 8, "shell": 0}),
                 "BadRequest")
        # nor take a name that is another domain's
        _refused(lambda: d.ctl.request("ready", exports=[{"name": "echo", "interface": "x.Y", "fingerprint": "z"}]),
                 "Conflict")
        # hello as echo (its id, its pid): refused, so echo's notices stay echo's
        _refused(lambda: d.ctl.request("hello", domain_id=echo["id"], pid=echo["pid"]), "AuthError")
        _refused(lambda: d.ctl.request("hello", pid=echo["pid"]), "AuthError")
        # the instance token names no domain, and a credential issues no user command
        tok = ControlClient(inst.name)
        try:
            _refused(lambda: tok.request("lease", kind="records", count=1), "AuthError")
        finally:
            tok.close()
        _refused(lambda: d.ctl.request("bind_device", device="echo"), "BadRequest")
        d.ctl.token = None  # as a domain process: no token to fall back on
        _refused(lambda: d.ctl.request("kill", name="echo", how="sigkill"), "AuthError")
        # echo still serves, and a new channel's notice reaches echo itself
        assert d.lookup("echo", Echo).inc(41) == 42
    st = _unchanged(inst, before)
    assert [x["name"] for x in st["echo"]["exports"]] == ["echo"]


def test_attach_cannot_claim_a_domain_or_another_process(echo_instance):
    inst = echo_instance
    before = inst.status()
    echo_pid = before["echo"]["pid"]
    ctl = ControlClient(inst.name)
    other = subprocess.Popen(["sleep", "60"])
    try:
        # the old protocol's one-step claim, and the proof's first step, for echo's pid
        _refused(lambda: ctl.request("attach", pid=echo_pid, nonce="0" * 15), "AuthError")
        _refused(lambda: ctl.request("attach_nonce", pid=echo_pid), "AuthError")
        # a process of ours that is not the one asking: it cannot show the nonce
        n = ctl.request("attach_nonce", pid=other.pid)["nonce"]
        _refused(lambda: ctl.request("attach", pid=other.pid, nonce=n), "AuthError")
        # and a guessed nonce without asking is refused as well
        _refused(lambda: ctl.request("attach", pid=other.pid, nonce=n), "AuthError")
    finally:
        ctl.close()
        other.kill()
        other.wait()
    st = _unchanged(inst, before)
    assert not [r for r in st.values() if r["kind"] == "client"]
    # echo's death is still noticed (its pid map was not overwritten): it comes back
    inst.request("kill", name="echo", how="sigkill")
    deadline = time.monotonic() + 60
    while True:
        row = inst.status()["echo"]
        if row["state"] == "running" and row["pid"] != echo_pid:
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.01)
    assert not process_running(echo_pid)


def test_report_hang_against_an_idle_domain_kills_nobody(echo_instance):
    inst = echo_instance
    before = inst.status()
    with inst.attach() as d:
        assert d.lookup("echo", Echo).inc(1) == 2  # a channel, nothing outstanding
        # (domain_id: our own, which agrees with our credential; the old protocol needed it)
        _refused(lambda: d.ctl.request("report_hang", domain_id=d.domain_id, callee=before["echo"]["id"]),
                 "NotHung")
        # an id nobody has: nothing to suspect
        assert d.ctl.request("report_hang", domain_id=d.domain_id, callee=9999)["suspected"] is False
    _unchanged(inst, before)


def _wait_verdict(inst, name: str, pid: int, needle: str, timeout: float = 60.0) -> None:
    """Until the supervisor logs `needle`, or domain `name` no longer runs as `pid`."""
    path = inst.paths.log("supervisor")
    deadline = time.monotonic() + timeout
    while needle not in path.read_text():
        row = inst.status()[name]
        if row["pid"] != pid or row["state"] != "running":
            return
        assert time.monotonic() < deadline, f"the supervisor never logged {needle!r}"
        time.sleep(0.01)


def test_max_sequence_number_hurts_only_the_writer(echo_instance):
    inst = echo_instance
    before = inst.status()
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        assert e.inc(1) == 2
        link = next(lk for (name, _i, _r), lk in d.rt.links.items() if name == "echo")
        ch = link.ch
        # the client writes the largest request number into its own channel
        _U64.pack_into(ch.buf, REQ_SEQ, (1 << 64) - 1)
        link.waker.wake()
        deadline = time.monotonic() + 30
        while _U64.unpack_from(ch.buf, RESP_SEQ)[0] != (1 << 64) - 1:  # echo answered it (a rejection)
            assert time.monotonic() < deadline, "echo never took the forged request"
            time.sleep(0.001)
        # from now on echo ignores this channel's ordinary requests: one is outstanding
        # for ever, and its caller reports echo hung, as a caller whose deadline passed does
        ch.post_request(b"\x00")
        d.ctl.request("report_hang", domain_id=d.domain_id, callee=before["echo"]["id"])
        # the verdict: the supervisor logs the report as not confirmed (or, had it
        # believed the report, echo would be gone)
        _wait_verdict(inst, "echo", before["echo"]["pid"], "hang report about echo by domain")
        # the writer hurt itself only: a new channel (and anyone else's) works
        link.broken = True
        assert e.inc(5) == 6
    st = _unchanged(inst, before)
    assert "killed" not in st["echo"]["reason"]


def test_a_byte_in_the_heaps_domain_table_frees_nothing_of_a_live_domain(make_instance):
    from redleaf.shared_heap.layout import D_DEAD

    inst = make_instance(TWO_ECHOES)
    before = inst.status()
    echo_id = before["echo"]["id"]
    with inst.attach() as d:
        e = d.lookup("echo", Echo)
        buf = d.heap.alloc_vec(np.uint8, 4096)
        buf.buf[:] = bytes([7]) * 4096
        assert e.keep(buf) == 1  # echo owns it now
        mine = d.heap.alloc_vec(np.uint8, 64)
        # one byte each: echo's and our own entries in the heap's domain table say DEAD
        d.heap.hf.domains["state"][echo_id] = D_DEAD
        d.heap.hf.domains["state"][d.domain_id] = D_DEAD
        # a death makes the supervisor reclaim and sweep: the moment it used to read that byte
        inst.request("kill", name="bystander", how="sigkill")
        deadline = time.monotonic() + 60
        while True:
            row = inst.status()["bystander"]
            if row["state"] == "running" and row["pid"] != before["bystander"]["pid"]:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.01)
        assert e.kept_sum() == 7 * 4096  # echo's object is still there
        mine.buf[:] = bytes([1]) * 64  # still ours: the access raises if it was freed
        assert bytes(mine.buf) == bytes([1]) * 64
        more = d.heap.alloc_vec(np.uint8, 1 << 17)  # leases still work for us
        more.drop()
    _unchanged(inst, {k: v for k, v in before.items() if k != "bystander"})
    assert inst.request("heap", check=True)["violations"] == []


@pytest.mark.parametrize("fields", [
    {"config": {"x": "a" * 200_000}, "uses": []},  # the config that killed the zygote send
    {"config": {}, "uses": [f"u{i}" for i in range(90_000)]},  # a spec too big for one datagram
    {"config": {}, "uses": [], "path": "/" + "a" * 1_000_000},
])
def test_an_oversized_load_is_refused_and_leaves_nothing(echo_instance, fields):
    inst = echo_instance
    before = inst.status()
    _refused(lambda: inst.request("load", name="big", target="redleaf.domains.builtin.echo:EchoDomain",
                                  restart="temporary", shadow=False, **fields), "BadRequest")
    st = _unchanged(inst, before)
    assert "big" not in st
