import pytest

from redleaf.supervisor.manifest import ManifestError, load_manifest, parse_manifest, parse_size


def test_default_manifest_loads():
    m = load_manifest(None)
    assert m.heap_size == 256 << 20
    assert [d.name for d in m.boot_order()]


def test_sizes():
    assert parse_size("256MiB", "x") == 256 << 20
    assert parse_size("4k", "x") == 4096
    assert parse_size(123, "x") == 123
    with pytest.raises(ManifestError, match="not a size"):
        parse_size("lots", "x")


def test_boot_order_respects_uses():
    m = parse_manifest("""
[[domain]]
name = "app"
target = "a.b:C"
uses = ["fs"]
[[domain]]
name = "fs"
target = "a.b:D"
uses = { disk = "nvme" }
[[domain]]
name = "nvme"
target = "a.b:E"
""")
    assert [d.name for d in m.boot_order()] == ["nvme", "fs", "app"]


@pytest.mark.parametrize("text, message", [
    ('[[domain]]\nname = "x"\n', "needs `name` and `target`"),
    ('[[domain]]\nname = "x"\ntarget = "nocolon"\n', "package.module:Class"),
    ('[[domain]]\nname = "x"\ntarget = "a:B"\nrestart = "sometimes"\n', "restart"),
    ('[[domain]]\nname = "x"\ntarget = "a:B"\nbogus = 1\n', "unknown field"),
    ('[[domain]]\nname = "x"\ntarget = "a:B"\n[[domain]]\nname = "x"\ntarget = "a:C"\n', "used twice"),
    ('[[domain]]\nname = "x"\ntarget = "a:B"\nuses = ["y"]\n[[domain]]\nname = "y"\ntarget = "a:C"\nuses = ["x"]\n',
     "cycle"),
    ("this is = not toml [", "not valid TOML"),
    ('[wat]\n', "unknown section"),
])
def test_bad_manifests_are_rejected_with_a_reason(text, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text)


def test_shadow_expands_into_driver_and_shadow():
    m = parse_manifest('''
[[domain]]
name = "e0"
target = "tests.supervisor.shadowed:ShadowedEcho"
shadow = true
config = { x = 1 }
''')
    drv, sh = m.boot_order()
    assert (drv.name, drv.target, drv.shadow) == ("e0.driver", "tests.supervisor.shadowed:ShadowedEcho", False)
    assert (sh.name, sh.target) == ("e0", "tests.supervisor.shadowed:EchoShadow")
    assert sh.uses == {"driver": "e0.driver"} and sh.config == {"x": 1, "driver": "e0.driver"}
    assert sh.companion == "e0.driver"


def test_shadow_needs_a_driver_that_declares_one():
    with pytest.raises(ManifestError, match="declares no shadow"):
        parse_manifest('[[domain]]\nname = "e0"\ntarget = "tests.supervisor.shadowed:NoShadow"\nshadow = true\n')


@pytest.mark.parametrize("extra, message", [
    ("may_spawn = true\n", "may_spawn = true needs spawn_target"),
    ('spawn_target = "a.b:C"\n', "spawn_target only applies with may_spawn = true"),
    ('may_spawn = "yes"\n', "may_spawn must be true or false"),
    ('may_spawn = true\nspawn_target = "nocolon"\n', "package.module:Class"),
    ('may_spawn = true\nspawn_target = "a.b:C"\ngroup = "g"\n', "may_spawn is for a plain domain"),
])
def test_may_spawn_needs_a_fixed_target_and_a_plain_domain(extra, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest('[[domain]]\nname = "k"\ntarget = "a.b:K"\n' + extra)


def test_the_default_kernel_may_spawn_user_programs_only():
    m = load_manifest(None)
    spawners = {d.name: d.spawn_target for d in m.domains if d.may_spawn}
    assert spawners == {"rv6kernel": "redleaf.rv6.user_host:UserProgram"}
