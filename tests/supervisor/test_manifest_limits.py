"""A manifest is bounded by the machine and fully typed: sizes that would fill /dev/shm or
memory, numbers out of range, unknown keys and oversized configs are refused with one line
naming the field, before anything is created."""

import pytest

from redleaf.supervisor.manifest import ManifestError, parse_manifest

D = '[[domain]]\nname = "x"\ntarget = "a.b:C"\n'


@pytest.mark.parametrize("text, message", [
    ('[heap]\nrecords = 2147483648\n', "more than"),          # once touched 23.5 GB of /dev/shm
    ('[heap]\nsize = "100GiB"\n', "more than"),                # a 24 GB tmpfs cannot hold it
    ('[heap]\nsize = 5\n', "below the minimum"),               # was a traceback
    ('[heap]\nsize = "0MiB"\n', "not a size"),
    ('[heap]\nrecords = "many"\n', "records must be an integer"),
    ('[heap]\nrecords = 1\n', "records must be between"),
    ('[heap]\nsise = "1MiB"\n', "unknown key"),
    ('[supervisor]\nwatchdog_s = -1\n', "watchdog_s"),         # was accepted
    ('[supervisor]\nwatchdog_s = 0\n', "watchdog_s"),
    ('[supervisor]\nwatchdog_s = "5"\n', "watchdog_s"),
    ('[supervisor]\nwatchdogs = 5\n', "unknown key"),           # was silently ignored
    ('heap = 5\n', r"\[heap\] must be a table"),
    ('domain = 5\n', r"\[\[domain\]\]"),
    (D + 'max_restarts = 99999999999\n', "max_restarts"),
    (D + 'period_s = 1e12\n', "period_s"),
    (D + 'watchdog_s = 0\n', "watchdog_s"),
    (D + 'backoff_s = true\n', "backoff_s"),
    (D + 'config = { blob = "' + "x" * (70 << 10) + '" }\n', "bytes encoded"),   # was EMSGSIZE at boot
    (D + 'uses = [[]]\n', "uses must be a list of names"),   # was TypeError (found by the manifest fuzzer)
    (D + 'uses = [{}]\n', "uses must be a list of names"),
    (D + 'uses = ["x", 5]\n', "uses must be a list of names"),
])
def test_refused_with_the_field_named(text, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text, "m.toml")


def test_heap_bound_follows_the_machine(monkeypatch):
    # The same heap that fits today is refused where /dev/shm is nearly full.
    parse_manifest('[heap]\nsize = "64MiB"\n')

    class Usage:
        free = 100 << 20
    monkeypatch.setattr("shutil.disk_usage", lambda p: Usage)
    with pytest.raises(ManifestError, match="/dev/shm"):
        parse_manifest('[heap]\nsize = "64MiB"\n')


def test_old_import_names_are_told_the_new_one():
    with pytest.raises(ManifestError, match="use 'redleaf.domains.builtin.echo:EchoDomain'"):
        parse_manifest('[[domain]]\nname = "e"\ntarget = "domains.builtin.echo:EchoDomain"\n')


def test_in_range_values_are_taken():
    m = parse_manifest('[heap]\nsize = "16MiB"\nrecords = 4096\n[supervisor]\nwatchdog_s = 2.5\n'
                       + D + 'max_restarts = 3\nperiod_s = 1\nconfig = { k = "v" }\n')
    assert (m.heap_size, m.heap_records, m.watchdog_s) == (16 << 20, 4096, 2.5)
    assert m.domains[0].max_restarts == 3 and m.domains[0].period_s == 1.0


def test_more_domains_than_the_table_holds_are_refused_at_parse():
    """Found by the manifest fuzzer (crashtest/fuzz/manifest.py): 300 domains parsed, and
    the boot then failed past the 254th; 1000 in a `uses` chain raised RecursionError."""
    def chain(n):
        return "".join(f'[[domain]]\nname = "d{i}"\ntarget = "a.b:C"\n' + (f'uses = ["d{i + 1}"]\n' if i + 1 < n else "")
                       for i in range(n))
    assert len(parse_manifest(chain(254)).domains) == 254
    for n in (255, 1000):
        with pytest.raises(ManifestError, match="more than the 254"):
            parse_manifest(chain(n))
