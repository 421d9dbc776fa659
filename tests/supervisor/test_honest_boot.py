"""An honest boot and a load that says what is wrong: targets are checked before anything
starts (importable, a class, not the @interface itself), `up --detach` returns only once
every domain serves and exits non-zero naming each one that did not, and `load` refuses
bad flags with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from redleaf.domains.paths import InstancePaths

HERE = os.path.dirname(__file__)
ECHO = 'name = "echo"\ntarget = "redleaf.domains.builtin.echo:EchoDomain"\n'


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.fixture
def detached(tmp_path):
    """Instances started with `up --detach` by the test, always brought down."""
    names = []

    def up(manifest: str, *extra):
        name = f"t{uuid.uuid4().hex[:10]}"
        names.append(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(manifest)
        return name, _cli("--name", name, "up", "--detach", "--manifest", str(path), *extra, cwd=HERE)

    yield up
    for name in names:
        _cli("--name", name, "down")
        assert not InstancePaths(name).root.exists() and not InstancePaths(name).heap.exists()


def test_unimportable_target_fails_up_before_anything_starts(detached):
    name, r = detached(f'[[domain]]\n{ECHO}\n[[domain]]\nname = "bad"\ntarget = "nosuch:Foo"\n')
    assert r.returncode == 1
    assert "bad: cannot import nosuch:Foo: ModuleNotFoundError: No module named 'nosuch'" in r.stderr
    assert not InstancePaths(name).root.exists()          # nothing was started


def test_an_interface_class_is_not_a_domain(detached):
    name, r = detached('[[domain]]\nname = "e"\ntarget = "redleaf.domains.builtin.echo:Echo"\n')
    assert r.returncode == 1 and "is the @interface itself, not a domain" in r.stderr, r.stderr


def test_a_domain_that_does_not_come_up_fails_up_naming_it(detached):
    name, r = detached(f'[[domain]]\n{ECHO}\n[[domain]]\nname = "refuser"\n'
                       f'target = "bad_domains:RaisesInInit"\nmax_restarts = 1\n')
    assert r.returncode == 1, r.stderr
    assert "refuser did not come up" in r.stderr and "constructor refused to start" in r.stderr, r.stderr
    st = _cli("--name", name, "status", "--json")
    assert st.returncode == 0                            # it is up, and says which domain is not


def test_keep_going_boots_the_rest(detached):
    name, r = detached(f'[[domain]]\n{ECHO}\n[[domain]]\nname = "bad"\ntarget = "nosuch:Foo"\n', "--keep-going")
    assert r.returncode == 0 and "warning: bad: cannot import" in r.stderr, r.stderr
    assert '"echo"' in _cli("--name", name, "status", "--json").stdout


def test_load_refuses_bad_flags_with_one_line(make_instance):
    inst = make_instance()
    cases = [
        (["load", "x", "redleaf.domains.builtin.echo:Echo"], "is the @interface itself"),
        (["load", "x", "nosuch.mod:Foo"], "No module named 'nosuch'"),
        (["load", "x", "redleaf.domains.builtin.echo:EchoDomain", "--set", "bad=[1,"], "does not parse"),
        (["load", "x", "redleaf.domains.builtin.echo:EchoDomain", "--uses", "missing"], "names no domain"),
    ]
    for args, msg in cases:
        r = _cli("--name", inst.name, *args)
        assert r.returncode == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert "x" not in inst.status()                      # and nothing was left behind
    r = _cli("--name", inst.name, "load", "x", "redleaf.domains.builtin.echo:EchoDomain", "--set", "image=disk.img")
    assert r.returncode == 0, r.stderr


def test_load_help_documents_every_flag():
    out = _cli("load", "--help").stdout
    assert "transient only after an abnormal exit" in " ".join(out.split())
    assert "behind the shadow" in out and "a bare word is a string" in " ".join(out.split())
