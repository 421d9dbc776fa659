"""`net-fwd`: the frame ledger (pure) on hand-made arrivals, and a short campaign
through the ixgbe device's udp wire, the driver behind its shadow and l2fwd."""

import json

import pytest

from redleaf.crashtest import cli
from redleaf.crashtest.workloads.net_fwd import PATH, FrameLedger, NetFwdWorkload
from redleaf.drivers.ixgbe.frames import make_test_frame


def _ledger(n):
    led = FrameLedger()
    for _ in range(n):
        led.send()
    return led


def test_a_clean_path_loses_nothing():
    led = _ledger(4)
    for s in range(4):
        assert led.got(make_test_frame(s, 60))
    assert led.settle() == 0 and not led.outstanding and led.lost == 0 and led.problems == []


def test_a_frame_overtaken_by_a_later_one_is_lost_and_counted_once():
    led = _ledger(5)
    for s in (0, 3, 4):
        assert led.got(make_test_frame(s, 128))
    assert led.settle() == 2 and led.lost == 2 and not led.outstanding
    assert led.problems == []


def test_corrupt_duplicate_reordered_and_foreign_frames_are_problems():
    led = _ledger(4)
    bad = bytearray(make_test_frame(0, 64))
    bad[40] ^= 0xFF
    assert not led.got(bytes(bad))
    assert led.got(make_test_frame(2, 64))
    assert not led.got(make_test_frame(2, 64))
    assert led.got(make_test_frame(1, 64))  # delivered, but after a frame sent later
    assert not led.got(make_test_frame(9, 64))
    assert [p.split(" (")[0] for p in led.problems] == [
        "a corrupted frame came back", "frame 2 came back twice",
        "frame 1 came back after frame 2, sent later: reordered", "frame 9 came back but was never sent"]


def test_give_up_loses_everything_outstanding():
    led = _ledger(3)
    led.got(make_test_frame(0, 60))
    assert led.give_up() == 2 and led.lost == 2 and not led.outstanding


def test_losses_are_expected_only_when_the_wave_hit_the_path(tmp_path):
    wl = NetFwdWorkload(str(tmp_path))
    try:
        for t in PATH:
            assert wl.expected("FrameLost", {t})
        assert not wl.expected("FrameLost", {"client-1"}) and not wl.expected("FrameLost", set())
        assert not wl.expected("DomainCrashed", {"l2fwd"})
        assert f"local_port = {wl.dev_port}, peer_port = {wl.port}" in wl.manifest()
    finally:
        wl.close()


@pytest.mark.timeout(300)
def test_a_short_net_fwd_campaign_passes(capsys):
    rc = cli.run(["--json", "--workload", "net-fwd", "--count", "20", "--duration", "5", "--faults",
                  "sigkill,sigsegv,exception,exit,stop,slow", "--stall-s", "0.3", "--seed", "3"])
    s = json.loads(capsys.readouterr().out)
    assert s["violations"] == [], [v["what"] for v in s["violations"]]
    assert rc == 0
    assert s["faults"]["fired"] == 20 and s["recoveries"]["not_recovered"] == 0
    assert s["client_errors"]["unexpected"] == 0
    w = s["workload"]
    assert s["calls"] == w["frames_back"] > 0  # each frame back intact is one completed operation
    assert w["frames_back"] + w["frames_lost"] <= w["frames_sent"]
    lost_rounds = s["client_errors"]["by_kind"].get("FrameLost (expected)", 0)
    assert lost_rounds == w["rounds_with_loss"] and (w["frames_lost"] > 0) == (lost_rounds > 0)
    assert set(s["faults"]["by_target"]) <= set(PATH)
