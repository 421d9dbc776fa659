"""The zygote warms the modules of this project's own targets once one was spawned, so a
restart forks with its code imported; a user's module (which might start a thread at
import) is never imported into the zygote, and a module that fails to import is left to
the domain's own start to report."""

from __future__ import annotations

import sys

from redleaf.supervisor.zygote import _warm


def test_our_targets_are_warmed_once_and_others_never(tmp_path, monkeypatch):
    warmed: set[str] = set()
    mod = "redleaf.drivers.ramdisk"
    monkeypatch.delitem(sys.modules, mod, raising=False)
    _warm(f"{mod}:RamDisk", warmed)
    assert mod in sys.modules and warmed == {mod}
    # a user's module in the user's directory: not imported into the zygote
    (tmp_path / "usermod_side_effects.py").write_text("raise SystemExit('imported into the zygote')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _warm("usermod_side_effects:Thing", warmed)
    assert "usermod_side_effects" not in sys.modules and warmed == {mod}
    # ours but broken or missing: ignored (the domain's start reports it), and not retried
    _warm("redleaf.no_such_module:X", warmed)
    assert "redleaf.no_such_module" in warmed
    _warm(None, warmed)
    _warm(12, warmed)
