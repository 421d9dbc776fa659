"""The same program sources on Rv6's real kernel: `redleaf sh -c LINE` against an instance
with rv6fs and rv6kernel (the programs installed by mkfs_if_blank). Skipped where the
kernel domain is not part of the tree yet; the fake-kernel tests beside this file cover
the programs' behaviour in detail, these check the wiring end to end and run usertests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

try:
    from redleaf.rv6 import kernel_domain  # noqa: F401  (present once the kernel has landed)
    from ..kernel.manifests import kernel_manifest
except ImportError:
    pytest.skip("Rv6's kernel domain is not in this tree", allow_module_level=True)

from redleaf.supervisor.instance import Instance


@pytest.fixture(scope="module")
def inst():
    img_dir = tempfile.mkdtemp(prefix="rv6u-")
    i = Instance(kernel_manifest(os.path.join(img_dir, "nvme0.img")))
    try:
        i.start()
        yield i
    finally:
        i.stop()
        left = i.leftovers()
        i.cleanup_log()
        for f in os.listdir(img_dir):
            os.unlink(os.path.join(img_dir, f))
        os.rmdir(img_dir)
        assert not left, f"the instance left things behind: {left}"


def sh(inst, line: str, timeout: float = 120) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "sh", "--name", inst.name,
                        "-c", line], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


def test_shell_wiring_on_the_kernel(inst):
    assert sh(inst, "mkdir /w; cd /w; echo hello world > f; cat f | grep hello | wc") == (0, "1 2 12 \n")
    assert sh(inst, "cd /w; grep o < f > g; echo more >> g; wc < g") == (0, "2 3 17 \n")
    assert sh(inst, "(echo a; echo b) | cat | wc") == (0, "2 2 4 \n")
    assert sh(inst, "grep zzz /w/f")[0] == 1
    assert sh(inst, "nosuch") == (127, "sh: nosuch: not found\n")
    assert sh(inst, "echo a | | wc") == (2, "sh: syntax error near '|'\n")
    assert sh(inst, "cat /bin/usertests | head -n 1") == (0, '"""usertests [-l] [NAME...]: '
                                                            "xv6's usertests re-expressed for "
                                                            "Rv6's system-call set.\n")


def test_programs_on_the_kernel(inst):
    st, out = sh(inst, "ls /bin | grep '^sh '")
    assert st == 0 and out.split()[:2] == ["sh", "2"]
    assert sh(inst, "cd /; mkdir /p; cp /bin/echo /p/e; mv /p/e /p/f; ln /p/f /p/g; "
                    "stat /p/g | grep nlink; rm -r /p; ls /p")[1].startswith("nlink: 2\nls: cannot stat /p")
    assert sh(inst, "spawntest 10") == (0, "spawntest: OK (10 children)\n")


def test_usertests_pass_on_the_kernel(inst):
    st, out = sh(inst, "usertests", timeout=900)
    assert "ALL TESTS PASSED" in out and st == 0, out
