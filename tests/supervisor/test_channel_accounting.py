"""`heap --check` reports the channel registry and the instance's other per-domain
objects (doorbells, /dev/shm files), read from the supervisor's own records and from
/proc/self, so a checker (crashtest's no-leaked-channel invariant) can compare them
with the domain table: here through one channel's life, the callee's death, the
caller's re-lookup and the caller's detach."""

from redleaf.crashtest import invariants as inv
from redleaf.domains.builtin.echo import Echo
from redleaf.domains.errors import ControlError


def _look(inst):
    h = inst.request("heap", check=True)
    rows = inst.request("status")["domains"]
    return h, rows, {r["name"]: r for r in rows}


def test_heap_check_accounts_for_every_channel_through_a_death_and_a_detach(echo_instance):
    inst = echo_instance
    with inst.attach() as c:
        e = c.lookup("echo", Echo)
        assert e.inc(1) == 2
        h, rows, by = _look(inst)
        me, echo = c.domain_id, by["echo"]["id"]
        [rec] = h["channels"]["channels"]
        assert (rec["caller"], rec["callee"], rec["ends"]) == (me, echo, sorted([me, echo]))
        assert h["channels"]["memfd_maps"] == 1
        assert h["channels"]["memfd_fds"] == (1 if rec["fd_open"] else 0)
        assert sorted(h["leftovers"]["bells"]) == sorted([me, echo])
        assert h["leftovers"]["shm"] == [h["leftovers"]["heap_file"]]
        assert inv.channel_problems(h, rows) == []

        pid = by["echo"]["pid"]
        inst.request("kill", name="echo", how="sigkill")
        inst.wait_state("echo", "running", pid_not=pid)
        h, rows, by = _look(inst)
        # the dead callee's end is gone; the caller keeps its own until its next call
        [rec] = h["channels"]["channels"]
        assert rec["ends"] == [me] and rec["callee"] == echo
        assert echo not in h["leftovers"]["bells"] or echo == by["echo"]["id"]
        assert inv.channel_problems(h, rows) == []

        assert e.inc(5) == 6  # the Link looks echo up again and closes the old channel
        h, rows, by = _look(inst)
        [rec] = h["channels"]["channels"]
        assert rec["callee"] == by["echo"]["id"] and rec["ends"] == sorted([me, by["echo"]["id"]])
        assert inv.channel_problems(h, rows) == []
    h, rows, by = _look(inst)
    assert h["channels"] == {"channels": [], "memfd_fds": 0, "memfd_maps": 0}
    assert h["leftovers"]["bells"] == [by["echo"]["id"]]
    assert inv.channel_problems(h, rows) == []


def test_the_channel_registry_is_the_users_alone(echo_instance):
    """A domain's credential cannot ask for `heap`, whose reply names every channel's
    parties: it is a user command (the instance token)."""
    with echo_instance.attach() as d:
        d.ctl.token = None  # as a domain process: no token to fall back on
        try:
            d.ctl.request("heap", check=True)
        except ControlError as e:
            assert e.kind == "AuthError", e
        else:
            raise AssertionError("a domain credential read the channel registry")


def test_redleaf_heap_check_shows_the_channels(echo_instance):
    import json
    import subprocess
    import sys

    def heap(*extra):
        return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", echo_instance.name,
                               "heap", "--check", *extra], capture_output=True, text=True, timeout=60)

    with echo_instance.attach() as c:
        assert c.lookup("echo", Echo).inc(1) == 2
        out = heap().stdout
        assert "channels: 1 (supervisor holds " in out and "check: OK" in out
        j = json.loads(heap("--json").stdout)
        assert len(j["channels"]["channels"]) == 1 and j["leftovers"]["shm"] == [j["leftovers"]["heap_file"]]
