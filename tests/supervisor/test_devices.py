"""Device quiesce through the device host's shell: fixed fields, no driver code,
driven by the loop's timers (never a wait in the loop)."""

import struct

from redleaf.domains.device_host import SHELL_BINDS, SHELL_BME, SHELL_DRIVER, SHELL_QACK, SHELL_QREQ
from redleaf.supervisor import devices as devices_mod
from redleaf.supervisor.devices import Devices
from redleaf.supervisor.loop import Loop
from redleaf.supervisor.table import RUNNING, Entry, Table

SHELL = 256
U32 = struct.Struct("<I")


def _rig():
    table = Table()
    mem = memoryview(bytearray(4096))
    loop = Loop()
    rung = []
    devs = Devices(table, mem, loop, rung.append)
    dev = Entry(name="dev0", kind="device", spec=None, tracker=None, state=RUNNING, pid=12345)
    table.assign_id(dev)
    dev.device = devs.check_ready({"bar": 0, "bar_size": 128, "shell": SHELL})
    table.entries[dev.name] = dev
    drv = Entry(name="drv", kind="domain", spec=None, tracker=None, state=RUNNING, pid=12346)
    table.assign_id(drv)
    table.entries[drv.name] = drv
    return table, mem, loop, rung, devs, dev, drv


def test_bind_sets_driver_binds_and_bus_master_enable():
    _t, mem, _l, _r, devs, dev, drv = _rig()
    info = devs.bind(drv, dev)
    assert info["bar"] == 0 and info["device_id"] == dev.id
    assert U32.unpack_from(mem, SHELL + SHELL_DRIVER)[0] == drv.id
    assert U32.unpack_from(mem, SHELL + SHELL_BINDS)[0] == 1
    assert U32.unpack_from(mem, SHELL + SHELL_BME)[0] == 1
    assert drv.bound_devices == ["dev0"]


def test_quiesce_completes_when_the_host_acknowledges():
    _t, mem, loop, rung, devs, dev, drv = _rig()
    devs.bind(drv, dev)
    done = []
    devs.quiesce(drv, lambda: done.append(1))
    assert U32.unpack_from(mem, SHELL + SHELL_BME)[0] == 0
    token = U32.unpack_from(mem, SHELL + SHELL_QREQ)[0]
    assert token != 0 and dev.id in rung
    assert not done  # posted, not waited for
    loop.run_once()
    assert not done
    U32.pack_into(mem, SHELL + SHELL_QACK, token)  # what the device host does
    while not done:
        loop.run_once()
    assert drv.bound_devices == []


def test_quiesce_gives_up_at_its_deadline(monkeypatch):
    _t, _m, loop, _r, devs, dev, drv = _rig()
    devs.bind(drv, dev)
    now = [1000.0]
    monkeypatch.setattr(devices_mod.time, "monotonic", lambda: now[0])  # the loop's clock too
    done = []
    devs.quiesce(drv, lambda: done.append(1))
    now[0] += devices_mod.QUIESCE_POLL_S
    loop.run_due()
    assert not done  # the device has not answered, the deadline is ahead
    now[0] += devices_mod.QUIESCE_DEADLINE_S
    loop.run_due()
    assert done == [1]  # reclaimed anyway, as after a function-reset timeout


def test_a_ready_message_pointing_outside_the_heap_is_refused():
    import pytest

    from redleaf.supervisor.table import Refusal

    _t, _m, _l, _r, devs, _d, _drv = _rig()
    with pytest.raises(Refusal, match="inside the exchange heap"):
        devs.check_ready({"bar": 4000, "bar_size": 1000, "shell": 0})
    with pytest.raises(Refusal, match="describe its BAR"):
        devs.check_ready({"bar": 0})
