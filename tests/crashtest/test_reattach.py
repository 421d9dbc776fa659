"""The Workload base's re-attach across a supervisor restart, without an instance: a
body that fails while the outage is on is run again once it is over, its failure an
error of the record (which the campaign expects in that wave), not a crash; outside
an outage the same failure is a crash.  And a short campaign of `supervisor` faults."""

import json
import threading

import pytest

from redleaf.crashtest import cli
from redleaf.crashtest.workloads.base import Workload


class Flaky(Workload):
    name = "flaky"

    def __init__(self):
        super().__init__("/nonexistent")
        self.instances = []
        self.in_body = threading.Event()

    def body(self, instance, rec, stop):
        self.instances.append(instance)
        with rec.call("x", 1.0):
            pass
        self.in_body.set()
        while not stop.is_set():
            if self.outage.is_set() and len(self.instances) == 1:
                raise ConnectionError("the supervisor is gone")
            self.gate()
            stop.wait(0.005)


def test_a_body_that_fails_in_an_outage_runs_again_after_it():
    wl = Flaky()
    rec = wl.start("inst")
    assert wl.in_body.wait(10)
    wl.in_body.clear()
    wl.begin_outage()
    assert wl.leave(10.0)
    # the thread waits for the instance to come back, running nothing
    assert not wl.in_body.wait(0.1) and wl.thread.is_alive()
    wl.end_outage()
    assert wl.in_body.wait(10)
    assert wl.stop(5.0)
    assert wl.runs == 2 and wl.instances == ["inst", "inst"]
    assert rec.crashed is None
    assert [(k, m) for _t, k, m, _what in rec.errors] == [("SupervisorLost", "ConnectionError: the supervisor is gone")]


def test_a_quiet_loop_leaves_at_its_gate():
    class Quiet(Flaky):
        def body(self, instance, rec, stop):
            self.instances.append(instance)
            self.in_body.set()
            while not stop.is_set():
                self.gate()
                stop.wait(0.005)

    wl = Quiet()
    rec = wl.start("inst")
    assert wl.in_body.wait(10)
    wl.in_body.clear()
    wl.begin_outage()
    assert wl.leave(10.0)
    wl.end_outage()
    assert wl.in_body.wait(10) and wl.stop(5.0)
    assert wl.runs == 2 and rec.errors == [] and rec.crashed is None


def test_outside_an_outage_a_failing_body_is_a_crash():
    class Broken(Flaky):
        def body(self, instance, rec, stop):
            raise ConnectionError("boom")

    wl = Broken()
    rec = wl.start("inst")
    wl.thread.join(5)
    assert rec.crashed == "ConnectionError: boom" and wl.runs == 1


@pytest.mark.timeout(300)
def test_a_campaign_that_kills_the_supervisor(capsys):
    rc = cli.run(["--json", "--workload", "echo", "--clients", "1", "--count", "3", "--duration", "2",
                  "--faults", "supervisor,sigkill", "--seed", "1"])
    s = json.loads(capsys.readouterr().out)
    assert s["violations"] == [], [v["what"] for v in s["violations"]]
    assert rc == 0
    sup = [f for f in s["fault_log"] if f["kind"] == "supervisor"]
    assert sup and all(f["restarted"] and f["how"].startswith("kill -9 of the supervisor") for f in sup)
    assert s["recoveries"]["not_recovered"] == 0 and s["client_errors"]["unexpected"] == 0
