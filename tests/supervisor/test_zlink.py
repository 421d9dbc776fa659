"""The supervisor's end of the zygote socket: requests are matched to reports by
request id, and a request with no report by its deadline is reported as timed out."""

import socket

import msgpack
import pytest

from redleaf.supervisor import zlink as zlink_mod
from redleaf.supervisor.zlink import ZygoteLink


@pytest.fixture
def link():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    events = []
    zl = ZygoteLink(ours, on_spawned=lambda r, p: events.append(("spawned", r, p)),
                    on_exit=lambda p, c: events.append(("exit", p, c)),
                    on_probe=lambda r, m: events.append(("probe", r, m["shadow"])),
                    on_timeout=lambda r: events.append(("timeout", r)),
                    on_lost=lambda: events.append(("lost",)))
    yield zl, theirs, events
    ours.close()
    theirs.close()


def test_reports_are_matched_by_request_id_in_any_order(link):
    zl, zyg, events = link
    a = zl.spawn({"name": "a"})
    b = zl.spawn({"name": "b"})
    assert a != b
    assert msgpack.unpackb(zyg.recv(1 << 16))["req"] == a
    assert msgpack.unpackb(zyg.recv(1 << 16))["req"] == b
    for msg in ({"spawned": 11, "req": b}, {"exit": 11, "code": -9}, {"spawned": 10, "req": a},
                {"probe": 7, "shadow": "m:S"}):
        zyg.send(msgpack.packb(msg))
    zl.drain()
    assert events == [("spawned", b, 11), ("exit", 11, -9), ("spawned", a, 10), ("probe", 7, "m:S")]
    assert zl.pending == {}


def test_a_request_without_a_report_times_out(link, monkeypatch):
    zl, _zyg, events = link
    now = [50.0]
    monkeypatch.setattr(zlink_mod.time, "monotonic", lambda: now[0])
    req = zl.spawn({"name": "a"})
    zl.check_deadlines()
    assert events == []
    now[0] += zlink_mod.SPAWN_REPLY_S + 1
    zl.check_deadlines()
    zl.check_deadlines()
    assert events == [("timeout", req)]


def test_a_closed_zygote_is_reported_lost(link):
    zl, zyg, events = link
    zyg.close()
    zl.drain()
    assert events == [("lost",)]
