"""kill -9 of the kernel domain: its programs die with it (the supervisor kills a
spawner's children), it restarts, a client's next call reaches the new incarnation
(a call in flight fails with DomainCrashed; the next one looks the name up again), and new programs run on the same file system."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from redleaf.rv6 import ulib
from redleaf.rv6.kernel_interface import Rv6Sys

from .manifests import kernel_manifest

SLEEPER = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.puts("up")
    ulib.sleep(60000)
"""
HI = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.puts("hi again")
    return 7
"""


def _install(path: str, src: str) -> None:
    fd = ulib.open(path, ulib.O_CREATE | ulib.O_WRONLY | ulib.O_TRUNC)
    ulib.write(fd, src.encode())
    ulib.close(fd)


def _children(inst) -> dict:
    return {n: d for n, d in inst.status().items() if n.startswith("rv6kernel.child")}


def test_kill_9_of_the_kernel_restarts_it_and_new_programs_run(make_instance, tmp_path):
    inst = make_instance(kernel_manifest(str(tmp_path / "nvme0.img")))
    try:
        with inst.attach() as c:
            k = c.lookup("rv6kernel", Rv6Sys)
            ulib._bind(k)
            _install("/bin/sleeper", SLEEPER)
            _install("/bin/hi", HI)
            ulib.spawn("/bin/sleeper", ["sleeper"])
            seen = b""
            while b"up" not in seen:
                seen += k.console_output(100)
                time.sleep(0.002)
            child = next(iter(_children(inst).values()))
            old = inst.status()["rv6kernel"]["pid"]
            os.kill(old, signal.SIGKILL)
            inst.wait_state("rv6kernel", "running", pid_not=old, timeout=30)
            # the running program died with its kernel
            deadline = time.monotonic() + 30
            while _children(inst):
                assert time.monotonic() < deadline, _children(inst)
                time.sleep(0.01)
            with pytest.raises(OSError):
                os.kill(child["pid"], 0)
            # the client's next call reaches the new incarnation (a call in flight during
            # the death would have been DomainCrashed): a new session there
            assert ulib.getpid() >= 2
            assert [p[0] for p in ulib.procs()] == [1, ulib.getpid()]
            assert ulib.stat("/bin/hi").type == ulib.T_FILE  # the fs is the same
            pid = ulib.spawn("/bin/hi", ["hi"])
            assert ulib.wait(pid) == (pid, 7)
            out = b""
            while b"hi again\n" not in out:
                out += k.console_output(100)
    finally:
        ulib._bind(None)


def test_files_open_across_an_fs_restart_are_eio_never_another_files_data(make_instance, tmp_path):
    inst = make_instance(kernel_manifest(str(tmp_path / "nvme0.img")))
    try:
        with inst.attach() as c:
            ulib._bind(c.lookup("rv6kernel", Rv6Sys))
            _install("/a", "aaaa")
            fd = ulib.open("/a")
            old = inst.status()["rv6fs"]["pid"]
            os.kill(old, signal.SIGKILL)
            inst.wait_state("rv6fs", "running", pid_not=old, timeout=30)
            # a file opened on the new fs gets the first free fs descriptor: the number the
            # old file had (/a itself may be gone: the fs keeps what was fsync'd)
            fd_b = ulib.open("/b", ulib.O_CREATE | ulib.O_RDWR)
            ulib.write(fd_b, b"bbbb")
            ulib.lseek(fd_b, 0, ulib.SEEK_SET)
            for call, args in ((ulib.read, (fd, 4)), (ulib.fstat, (fd,)), (ulib.lseek, (fd, 0, 0))):
                with pytest.raises(ulib.Rv6Error) as ei:
                    call(*args)
                assert ei.value.errno == errno.EIO, call
            ulib.close(fd)
            assert ulib.read(fd_b, 10) == b"bbbb"  # closing the stale one closed nothing of the new fs
            ulib.close(fd_b)
            assert ulib.stat("/dev/console").type == ulib.T_DEV
            assert inst.status()["rv6kernel"]["restarts"] == 0
    finally:
        ulib._bind(None)


def test_redleaf_sh_ends_with_a_reason_when_the_kernel_dies_under_it(make_instance, tmp_path):
    import subprocess
    import sys

    inst = make_instance(kernel_manifest(str(tmp_path / "nvme0.img")))
    try:
        with inst.attach() as c:
            ulib._bind(c.lookup("rv6kernel", Rv6Sys))
            _install("/bin/sleeper", SLEEPER)
        p = subprocess.Popen([sys.executable, "-m", "redleaf.supervisor.cli", "--name", inst.name, "sh",
                              "--program", "/bin/sleeper"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            assert p.stdout.readline() == b"up\n"
            old = inst.status()["rv6kernel"]["pid"]
            os.kill(old, signal.SIGKILL)
            _out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 1
        assert err.startswith(b"redleaf sh: ") and b"/bin/sleeper" in err and err.count(b"\n") == 1, err
    finally:
        ulib._bind(None)
