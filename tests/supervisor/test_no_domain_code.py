"""No domain code runs in the supervisor: a `load --shadow` whose driver module
kills or hangs the process importing it fails with a clear error, and the
supervisor answers throughout (issue 13.2)."""

import threading

import pytest

from redleaf.domains.errors import ControlError
from tests.conftest import ECHO_MANIFEST


def _load_shadowed(inst, target, result):
    try:
        result["reply"] = inst.request("load", timeout_s=60.0, name="drv", target=target, restart="permanent",
                                       config={}, uses=[], shadow=True)
    except ControlError as e:
        result["error"] = e


def test_a_driver_that_exits_at_import_fails_the_load_not_the_supervisor(echo_instance):
    inst = echo_instance
    with pytest.raises(ControlError, match=r"exits_at_import.*exited with status 3"):
        inst.request("load", name="drv", target="tests.supervisor.exits_at_import:Driver", restart="permanent",
                     config={}, uses=[], shadow=True)
    st = inst.status()
    assert "drv" not in st and "drv.driver" not in st
    assert st["echo"]["state"] == "running"


def test_a_driver_that_hangs_at_import_fails_the_load_while_status_answers(echo_instance):
    inst = echo_instance
    pid = inst.status()["echo"]["pid"]
    result = {}
    t = threading.Thread(target=_load_shadowed, args=(inst, "tests.supervisor.sleeps_at_import:Driver", result))
    t.start()
    answered_during_load = 0
    try:
        while t.is_alive():
            st = inst.status()  # the supervisor answers while the import hangs elsewhere
            if t.is_alive():
                answered_during_load += 1
            assert st["echo"]["state"] == "running" and st["echo"]["pid"] == pid
            t.join(0.2)
    finally:
        t.join()
    assert answered_during_load > 0
    assert "reply" not in result
    err = result["error"]
    assert "sleeps_at_import" in str(err) and "did not finish within" in str(err)
    assert "\n" not in str(err)
    st = inst.status()
    assert "drv" not in st and "drv.driver" not in st


def test_a_shadowed_load_still_works(make_instance):
    inst = make_instance(ECHO_MANIFEST)
    r = inst.request("load", name="e1", target="tests.supervisor.shadowed:ShadowedEcho", restart="permanent",
                     config={}, uses=[], shadow=True)
    st = inst.status()
    assert r["id"] == st["e1"]["id"] and r["pid"] == st["e1"]["pid"]
    assert st["e1"]["state"] == "running" and st["e1.driver"]["state"] == "running"
    assert st["e1"]["target"] == "tests.supervisor.shadowed:EchoShadow"
    inst.request("unload", name="e1")
    st = inst.status()
    assert "e1" not in st and "e1.driver" not in st
