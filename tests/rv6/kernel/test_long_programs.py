"""A program that computes without a system call for longer than the watchdog's limit
is not taken for hung (the user host's heartbeat thread beats for it): only `kill`
ends a runaway program."""

from __future__ import annotations

from redleaf.rv6 import ulib
from redleaf.rv6.kernel_interface import Rv6Sys

from .manifests import kernel_manifest

SPIN = """
from redleaf.rv6 import ulib
import time

def main(argv):
    end = time.monotonic() + float(argv[1])
    n = 0
    while time.monotonic() < end:
        n += 1
    return 42
"""


def test_a_busy_program_outlives_the_watchdog_limit(make_instance, tmp_path):
    inst = make_instance(kernel_manifest(str(tmp_path / "nvme0.img"), watchdog_s=1.0))
    try:
        with inst.attach() as c:
            ulib._bind(c.lookup("rv6kernel", Rv6Sys))
            fd = ulib.open("/bin/spin", ulib.O_CREATE | ulib.O_WRONLY)
            ulib.write(fd, SPIN.encode())
            ulib.close(fd)
            pid = ulib.spawn("/bin/spin", ["spin", "3.0"])  # three watchdog periods
            assert ulib.wait(pid) == (pid, 42)
            assert inst.status()["rv6kernel"]["restarts"] == 0
    finally:
        ulib._bind(None)
