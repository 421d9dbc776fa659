"""Runtime.defer: work a domain does after its caller has the answer."""

from __future__ import annotations

import time

import pytest

from redleaf.domains import DomainCrashed
from tests.domains.deferring import Deferring

MANIFEST = """
[[domain]]
name = "d"
target = "tests.domains.deferring:DeferringDomain"
restart = "permanent"
backoff_s = 0.0
"""


def test_deferred_work_runs_after_the_answer_and_before_the_next_call(make_instance):
    inst = make_instance(MANIFEST)
    with inst.attach() as c:
        d = c.lookup("d", Deferring)
        answered = d.stamp(False)         # the method's own clock when it answered
        ran = d.last_deferred()           # served only after the deferred task finished
        assert ran > answered


def test_a_failing_deferred_task_is_a_panic(make_instance):
    inst = make_instance(MANIFEST)
    pid = inst.status()["d"]["pid"]
    with inst.attach() as c:
        d = c.lookup("d", Deferring)
        d.stamp(True)                     # the answer arrives; then the domain dies
        with pytest.raises(DomainCrashed):
            for _ in range(200):
                d.last_deferred()
                time.sleep(0.01)
    inst.wait_state("d", "running", pid_not=pid, timeout=10)
