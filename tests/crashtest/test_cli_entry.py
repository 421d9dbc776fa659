"""`redleaf crashtest` and `redleaf inject` through the installed command: the CLI
finds crashtest by its entry point without importing it."""

import subprocess
import sys

import pytest

from redleaf.domains.builtin.echo import Echo
from redleaf.domains import DomainCrashed


def _redleaf(*argv):
    return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", *argv], capture_output=True, text=True,
                          timeout=60)


def test_crashtest_is_found_through_its_entry_point():
    r = _redleaf("crashtest", "--help")
    assert r.returncode == 0, r.stderr
    assert "--preset soak" in r.stdout and "--replay K" in r.stdout
    r = _redleaf("crashtest", "--faults", "sigkill,bogus")
    assert r.returncode == 2 and "unknown fault kind" in r.stderr


def test_the_cli_does_not_import_crashtest():
    code = ("import sys, redleaf.supervisor.cli as c; c.build_parser(); "
            "print(any(m.startswith('redleaf.crashtest') for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_redleaf_inject_arms_the_nth_call(echo_instance):
    r = _redleaf("--name", echo_instance.name, "inject", "echo", "inc", "--nth", "2", "--action", "exception")
    assert r.returncode == 0, r.stderr
    assert "armed exception in call 2 of echo.inc()" in r.stdout
    with echo_instance.attach() as d:
        e = d.lookup("echo", Echo)
        assert e.inc(1) == 2
        with pytest.raises(DomainCrashed):
            e.inc(2)
    r = _redleaf("--name", echo_instance.name, "inject", "echo", "nope")
    assert r.returncode == 1 and "no export of this domain has a method 'nope'" in r.stderr


def test_the_cli_hands_the_tool_its_arguments_and_the_instance(monkeypatch):
    from redleaf.supervisor import cli as main_cli

    got = []

    class EP:
        def load(self):
            return lambda argv: got.append(argv) or 0

    monkeypatch.setattr(main_cli, "_tools", lambda: {"crashtest": EP()})
    monkeypatch.delenv("REDLEAF_INSTANCE", raising=False)
    assert main_cli.main(["crashtest", "--help"]) == 0
    assert main_cli.main(["--name", "inst1", "crashtest", "--count", "3"]) == 0
    assert main_cli.main(["crashtest", "--name", "inst2", "--seed", "1"]) == 0
    assert got == [["--help"], ["--name", "inst1", "--count", "3"], ["--name", "inst2", "--seed", "1"]]
