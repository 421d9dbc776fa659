"""The channel's memory-ordering contract: x86-64 only, refused elsewhere."""

from __future__ import annotations

import subprocess
import sys


def test_the_channel_refuses_a_weakly_ordered_cpu():
    probe = ("import platform; platform.machine = lambda: 'aarch64'\n"
             "import redleaf.domains.channel")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "ImportError: redleaf's shared-memory channels rely on x86-64 (TSO) store order; " \
           "this machine is aarch64" in out.stderr


def test_the_channel_loads_on_x86_64():
    probe = ("import platform; platform.machine = lambda: 'x86_64'\n"
             "import redleaf.domains.channel as c; print(c.OK)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "1\n"), out.stderr
