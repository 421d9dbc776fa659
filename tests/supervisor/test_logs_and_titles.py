"""Logs a person can read after the fact, and processes a person can tell apart: every
line of a domain's log carries a timestamp, every death is written with its cause in the
domain's log and the supervisor's alike, and each process is titled
redleaf:<instance>/<domain> in ps."""

from __future__ import annotations

import os
import re
import signal

import psutil

from tests.conftest import process_running

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def test_death_with_its_cause_in_both_logs_and_timestamps(make_instance):
    inst = make_instance()
    old = inst.status()["echo"]
    os.kill(old["pid"], signal.SIGKILL)
    inst.wait_state("echo", "running", timeout=30, pid_not=old["pid"])
    dom = inst.paths.log("echo").read_text().splitlines()
    assert dom and all(STAMP.match(line) for line in dom), [ln for ln in dom if not STAMP.match(ln)][:3]
    death = [ln for ln in dom if "[supervisor] echo" in ln]
    assert len(death) == 1 and f"pid {old['pid']}" in death[0] and "SIGKILL" in death[0], death
    cause = death[0].split(f"pid {old['pid']} ", 1)[1]
    assert f"pid {old['pid']} {cause}" in inst.paths.log("supervisor").read_text()


def test_processes_are_titled_by_instance_and_domain(make_instance):
    inst = make_instance()
    for name, row in inst.status().items():
        if row.get("pid") and process_running(row["pid"]):
            title = " ".join(psutil.Process(row["pid"]).cmdline())
            assert title.startswith(f"redleaf:{inst.name}/{name}"), title
    sup = inst.request("status")["pid"]
    assert " ".join(psutil.Process(sup).cmdline()).startswith(f"redleaf:{inst.name}/supervisor")
