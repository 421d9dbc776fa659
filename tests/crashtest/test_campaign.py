"""Short campaigns of each built-in workload, a workload whose own check fails (a
violation with its replay key, exit status 1), and `--replay`.

The campaigns run in this process (`redleaf.crashtest.cli.run`), booting their
instances through supervisor.instance, so the session's leak check sees them."""

import json
import os

import pytest

from redleaf.crashtest import cli

pytestmark = pytest.mark.timeout(300)  # a campaign boots an instance and waits out every recovery

QUICK_KINDS = "sigkill,sigsegv,exception,exit,stop,slow"
FIELDS = {"options", "instance", "faults", "recoveries", "time_to_recovery_s", "calls", "client_errors",
          "violations", "fault_log"}


def _run(capsys, *argv):
    rc = cli.run(["--json", *argv])
    out = capsys.readouterr().out
    return rc, json.loads(out)


@pytest.mark.parametrize("workload,count", [("echo", 24), ("fleet", 24), ("nvme-rw", 20)])
def test_a_short_campaign_passes_with_no_violation(capsys, workload, count):
    rc, s = _run(capsys, "--workload", workload, "--count", str(count), "--duration", "3", "--faults", QUICK_KINDS,
                 "--stall-s", "0.3", "--seed", "11")
    assert s["violations"] == [], s["violations"]
    assert rc == 0
    assert FIELDS <= set(s)
    assert s["faults"]["planned"] == count
    f = s["faults"]
    assert f["fired"] + f["skipped"] + f["not_fired"] == count and f["fired"] > 0
    assert sum(s["faults"]["by_kind"].values()) == s["faults"]["fired"]
    assert s["recoveries"]["not_recovered"] == 0
    assert s["recoveries"]["restarted"] > 0
    t = s["time_to_recovery_s"]
    assert t["count"] == s["faults"]["fired"] and 0 < t["median"] <= t["p99"] <= t["max"]
    assert s["client_errors"]["unexpected"] == 0
    assert s["calls"] > 0


def test_a_campaign_of_simultaneous_faults_on_every_nvme_process(capsys):
    rc, s = _run(capsys, "--workload", "nvme-rw", "--schedule", "simultaneous", "--count", "9", "--duration", "2",
                 "--faults", "sigkill,exception", "--seed", "5")
    assert s["violations"] == [] and rc == 0
    log = s["fault_log"]
    waves = {}
    for f in log:
        waves.setdefault(f["wave"], []).append(f["target"])
    assert any(len(set(t)) > 1 for t in waves.values())  # several targets hit in one instant


def test_the_soak_preset_split_over_two_instances_in_short(capsys, tmp_path):
    """`--preset soak` as CI can afford it: 800 faults in simultaneous waves on the
    fleet (domains apart and co-located), two campaigns at once, one merged report."""
    rep = tmp_path / "soak"
    rc, s = _run(capsys, "--preset", "soak", "--count", "800", "--parallel", "2", "--report", str(rep))
    print(f"soak preset, short: {s['faults']['fired']} faults fired, {s['calls']} calls")
    assert s["violations"] == [], s["violations"][:5]
    assert rc == 0
    assert s["options"]["parallel"] == 2 and s["options"]["seeds"] == [0, 1]
    assert s["faults"]["planned"] == 800
    f = s["faults"]
    assert f["fired"] + f["skipped"] + f["not_fired"] == 800 and f["fired"] >= 700
    assert set(f["by_target"]) == {"echo0", "echo1", "echo2", "echo3"}
    assert s["recoveries"]["not_recovered"] == 0 and s["client_errors"]["unexpected"] == 0
    assert sorted(p.name for p in rep.iterdir()) == ["plot.png", "report.json", "report.txt", "seed-0", "seed-1"]
    assert (rep / "seed-1" / "plot.png").exists()


BROKEN = "tests.crashtest.broken_workload:run"


def test_a_failing_workload_check_is_a_violation_with_its_replay_key(capsys, tmp_path):
    rc, s = _run(capsys, "--workload", BROKEN, "--count", "3", "--duration", "1", "--faults", "sigkill",
                 "--seed", "4", "--report", str(tmp_path / "rep"))
    assert rc == 1
    v = s["violations"]
    assert v and all("deliberately broken check" in x["what"] for x in v)
    first = v[0]
    assert first["seed"] == 4 and first["fault"] == 0 and first["kind"] == "sigkill" and first["target"] == "echo"
    assert first["replay"] == "--seed 4 --replay 0"
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["plot.png", "report.json", "report.txt"]
    assert "reproduce: redleaf crashtest --workload " + BROKEN in (tmp_path / "rep" / "report.txt").read_text()
    # the reproducer: the same options, fault 0 alone, the same violation
    rc, s = _run(capsys, "--workload", BROKEN, "--count", "3", "--duration", "1", "--faults", "sigkill",
                 "--seed", "4", "--replay", "0")
    assert rc == 1
    assert s["faults"]["fired"] == 1 and s["fault_log"][0]["index"] == 0
    assert s["violations"][0]["fault"] == 0


def test_replay_runs_exactly_the_fault_it_names(capsys):
    from redleaf.crashtest.schedule import make_plan, parse_kinds

    plan = make_plan(8, kinds=parse_kinds(QUICK_KINDS), count=10, duration=1.0)
    rc, s = _run(capsys, "--workload", "echo", "--count", "10", "--duration", "1", "--faults", QUICK_KINDS,
                 "--stall-s", "0.3", "--seed", "8", "--replay", "7")
    assert rc == 0 and s["violations"] == []
    assert [f["index"] for f in s["fault_log"]] == [7]
    assert s["fault_log"][0]["kind"] == plan[7].kind


def test_bad_options_exit_2_with_a_reason(capsys, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a campaign makes its directory
    assert cli.run(["--faults", "sigkill,nope"]) == 2
    assert "unknown fault kind" in capsys.readouterr().err
    assert cli.run(["--workload", "echo", "--count", "3", "--replay", "5"]) == 2
    assert "has 3 fault(s)" in capsys.readouterr().err
    assert cli.run(["--workload", "nosuch"]) == 2
    assert "unknown workload" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # a refused campaign leaves no directory behind


def test_fuzz_without_fuzzers_says_so(capsys, monkeypatch):
    monkeypatch.setattr(cli, "fuzzers", lambda: [])
    assert cli.run(["--fuzz", "control"]) == 2
    assert "no fuzzers installed" in capsys.readouterr().err


SLOW = pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="set RUN_SLOW=1 for the long campaigns")


@SLOW
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("workload", ["echo", "nvme-rw"])
@pytest.mark.parametrize("schedule", ["fixed", "poisson", "burst", "simultaneous"])
def test_long_campaigns_of_every_quick_kind_and_schedule(capsys, workload, schedule):
    rc, s = _run(capsys, "--workload", workload, "--schedule", schedule, "--count", "150", "--duration", "30",
                 "--faults", QUICK_KINDS, "--stall-s", "0.3", "--seed", "1")
    assert s["violations"] == [] and rc == 0
    assert s["recoveries"]["not_recovered"] == 0


@SLOW
@pytest.mark.timeout(900)
def test_hangs_inside_echo_calls_end_at_the_callers_deadline(capsys):
    rc, s = _run(capsys, "--workload", "echo", "--count", "3", "--duration", "1", "--faults", "hang", "--seed", "2")
    assert s["violations"] == [] and rc == 0
    assert s["recoveries"]["restarted"] == 3
    assert s["client_errors"]["by_kind"].get("RpcTimeout (expected)", 0) >= 1


def test_nvme_rw_never_scribbles_on_a_running_instance(capsys):
    assert cli.run(["--workload", "nvme-rw", "--name", "default", "--count", "1"]) == 2
    assert "would overwrite what is there" in capsys.readouterr().err


def test_a_driver_hang_inside_a_call_stays_below_the_shadow(capsys):
    """Found by a campaign: a hang of nvme0.driver inside a call lasted the shadow's call
    deadline (BDev's 30 s, +1 s to confirm); the client's own 30 s deadline to the
    shadow passed first (RpcTimeout), and the shadow had no restart_timeout left
    (DriverLost: it panicked).  The shadow now calls its driver with a shorter one."""
    rc, s = _run(capsys, "--workload", "nvme-rw", "--targets", "nvme0.driver", "--faults", "hang", "--count", "2",
                 "--duration", "1", "--seed", "1", "--replay", "0")
    assert s["violations"] == [] and rc == 0
    f = s["fault_log"][0]
    assert f["how"].startswith("inject hang") and f["restarted"]
    assert s["client_errors"]["expected"] == s["client_errors"]["unexpected"] == 0  # the shadow hid it


def test_replay_of_a_wave_fires_its_faults_together(capsys):
    from redleaf.crashtest.schedule import make_plan, waves

    plan = make_plan(5, schedule="simultaneous", kinds=("sigkill",), count=6, duration=1.0)
    wave = waves(plan)[0]
    assert len(wave) >= 2
    keys = ",".join(str(f.index) for f in wave)
    rc, s = _run(capsys, "--workload", "nvme-rw", "--schedule", "simultaneous", "--faults", "sigkill", "--count", "6",
                 "--duration", "1", "--seed", "5", "--replay", keys)
    assert rc == 0 and s["violations"] == []
    log = s["fault_log"]
    assert [f["index"] for f in log] == [f.index for f in wave]
    assert len({f["wave"] for f in log}) == 1 and len({f["target"] for f in log}) == len(log)


def test_fuzz_runs_the_named_fuzzer_with_count_and_seed(capsys, monkeypatch):
    # the real package: targets by their CLI names, helper modules (tally) are not targets
    assert cli.run(["--fuzz", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert "nvme-regs" in names and "manifest" in names and "tally" not in names
    assert cli.run(["--fuzz", "manifest", "--count", "50", "--seed", "3"]) == 0
    assert "inputs: 50" in capsys.readouterr().out
    assert cli.run(["--fuzz", "nope"]) == 2
    assert "no fuzzer 'nope'; available: " in capsys.readouterr().err
    # a fuzzer that reports crashes (or unclear inputs) fails the command
    import types

    calls = []
    mod = types.SimpleNamespace(run=lambda count, seed: calls.append((count, seed)) or {"inputs": count, "crashes": 2})
    real = cli.importlib.import_module
    monkeypatch.setattr(cli, "fuzzers", lambda: {"fake": "fake.fuzzer"})
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: mod if name == "fake.fuzzer" else real(name))
    assert cli.run(["--fuzz", "fake", "--count", "7", "--seed", "3", "--json"]) == 1
    assert calls == [(7, 3)] and '"crashes": 2' in capsys.readouterr().out
    mod.run = lambda count, seed: {"inputs": count, "crashes": 0, "unclear": 1}
    assert cli.run(["--fuzz", "fake"]) == 1


FS_KINDS = "sigkill,sigsegv,exception,exit,stop"


@pytest.mark.parametrize("workload", ["fs-ops", "rv6-usertests"])
def test_a_short_campaign_on_rv6_passes_with_no_violation(capsys, workload):
    """Rv6's fs (and kernel) on the shadowed NVMe driver: faults at every process of the
    stack; the data checks, the errors' judgement and (fs-ops) fsck of the image all
    pass."""
    rc, s = _run(capsys, "--workload", workload, "--count", "20", "--duration", "4", "--faults", FS_KINDS,
                 "--seed", "11")
    assert s["violations"] == [], [(v["fault"], v["target"], v["what"]) for v in s["violations"]]
    assert rc == 0
    f = s["faults"]
    assert f["fired"] > 0 and f["fired"] + f["skipped"] + f["not_fired"] == 20
    assert s["recoveries"]["restarted"] > 0 and s["recoveries"]["not_recovered"] == 0
    assert s["client_errors"]["unexpected"] == 0
    assert s["calls"] > 0
    # the stack's every layer was hit: the fs, the shadow, the driver and the device
    assert {"rv6fs", "nvme0.driver"} <= set(s["faults"]["by_target"])


@pytest.mark.parametrize("workload", ["fs-ops", "rv6-usertests"])
def test_rv6_workloads_never_scribble_on_a_running_instance(capsys, workload):
    assert cli.run(["--workload", workload, "--name", "default", "--count", "1"]) == 2
    assert "run it without --name" in capsys.readouterr().err


def test_an_error_a_round_reports_after_the_recovery_is_judged_with_its_wave(capsys):
    """Seen with rv6-usertests: a shell line that failed when rv6fs was hit reported it
    at the line's end, after the campaign had seen rv6fs back; judged then, it fell to
    the next wave (a driver kill: unexpected).  A wave's errors are judged once the
    loop is parked at its gate: this workload reports its error only once asked to park."""
    rc, s = _run(capsys, "--workload", "tests.crashtest.late_error_workload:run", "--count", "1", "--duration", "1",
                 "--faults", "sigkill", "--seed", "1")
    assert s["violations"] == [] and rc == 0, s["violations"]
    assert s["client_errors"]["by_kind"] == {"DomainCrashed (expected)": 1}


def test_a_shadow_hang_under_the_fs_is_found_by_the_fs_not_by_its_client(capsys):
    """Found by an fs-ops campaign: the shadow nvme0 hung inside rv6fs's call; rv6fs and
    its client both waited 30 s (the two interfaces' deadlines), the client's ran out
    first and killed rv6fs, the hung shadow was left with no caller to report it, and
    the restarted rv6fs waited out another 30 s on its mount (60 s: "did not come
    back").  rv6fs now calls its device with a shorter deadline (bdev_deadline_s)."""
    rc, s = _run(capsys, "--workload", "fs-ops", "--targets", "nvme0", "--faults", "hang", "--count", "1",
                 "--duration", "1", "--seed", "2", "--replay", "0")
    assert s["violations"] == [] and rc == 0, s["violations"]
    f = s["fault_log"][0]
    assert f["how"].startswith("inject hang") and f["restarted"]
    errors = s["client_errors"]
    assert errors["unexpected"] == 0
    assert not any(k.startswith("RpcTimeout") for k in errors["by_kind"])  # rv6fs gave up first, not its client
