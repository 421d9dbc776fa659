"""What a domain exports is discoverable: `status` lists each export's name, interface and
module, `lookup(name)` without an interface gives a proxy for the registered one, and the
attach REPL's banner says how."""

import json
import subprocess
import sys

import pytest

from redleaf.domains.builtin.echo import Echo


def test_status_names_exports_with_their_interface(make_instance):
    inst = make_instance()
    echo = inst.status()["echo"]
    assert echo["exports"] == [{"name": "echo", "interface": "Echo", "module": "redleaf.domains.builtin.echo"}]
    table = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "status"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "EXPORTS" in table and "echo:Echo" in table


def test_lookup_without_an_interface(make_instance):
    inst = make_instance()
    with inst.attach() as d:
        found = d.exports()
        assert found["echo"] == ["redleaf.domains.builtin.echo.Echo"]
        assert sorted(found["nvme0"]) == ["redleaf.drivers.bdev.BDev", "redleaf.drivers.bdev.NvmeBDev"]
        with pytest.raises(LookupError, match="several interfaces"):
            d.lookup("nvme0")
        p = d.lookup("echo")
        assert type(p).__name__ == type(d.lookup("echo", Echo)).__name__
        assert p.echo(b"hi") == b"hi" and p.inc(41) == 42
        with pytest.raises(LookupError, match="nothing exports 'nope'; exported: echo, ixgbe0"):
            d.lookup("nope")


def test_attach_banner_lists_exports(make_instance):
    inst = make_instance()
    r = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "attach"],
                       input="print('N=', len(d.exports()))\n", capture_output=True, text=True, timeout=60)
    assert "echo" in r.stderr and "redleaf.domains.builtin.echo.Echo" in r.stderr
    assert 'd.lookup("echo")' in r.stderr
    assert "N= 7" in r.stdout  # echo, nvme0 (+ driver), ixgbe0 (+ driver), rv6fs, rv6kernel
