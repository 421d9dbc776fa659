"""The control dispatch table and the loop's timers, without processes."""

import pytest

from redleaf.domains import control as protocol
from redleaf.supervisor import loop as loop_mod
from redleaf.supervisor.control import Control, DispatchTableError, check_table
from redleaf.supervisor.loop import Loop


def _control():
    # The constructor only builds and checks the table; nothing else is touched.
    return Control(*([None] * 8))


def test_every_protocol_command_has_a_handler():
    c = _control()
    assert set(c.handlers) == set(protocol.COMMANDS)
    check_table(c.handlers, c)


def test_a_missing_handler_is_caught():
    c = _control()
    handlers = dict(c.handlers)
    del handlers["status"]
    with pytest.raises(DispatchTableError, match="no handler for command.*status"):
        check_table(handlers, c)


def test_a_protocol_command_without_a_handler_stops_the_supervisor_at_start(monkeypatch):
    monkeypatch.setitem(protocol.COMMANDS, "frobnicate", {})
    with pytest.raises(DispatchTableError, match="frobnicate"):
        _control()


def test_a_handler_outside_the_table_is_caught():
    class Extra(Control):
        def cmd_orphan(self, ident, msg):
            return {}

    with pytest.raises(DispatchTableError, match="cmd_orphan"):
        Extra(*([None] * 8))


class _Unordered:
    """Bound methods of this class cannot be ordered: comparing two raises TypeError."""

    def __init__(self, ran, i):
        self.ran, self.i = ran, i

    def fire(self):
        self.ran.append(self.i)


def test_timers_with_equal_deadlines_run_in_order_without_comparing_callbacks(monkeypatch):
    monkeypatch.setattr(loop_mod.time, "monotonic", lambda: 100.0)
    lp = Loop()
    ran = []
    for i in range(200):
        lp.after(0.0, _Unordered(ran, i).fire)
    lp.run_due()
    assert ran == list(range(200))
