"""A kernel instance shared by a module's tests (booting one takes about a second), the
test process attached to it with ulib bound to its session, and helpers to install
programs into /bin and read the session's console."""

from __future__ import annotations

import os
import tempfile
import time

import msgpack
import pytest

from redleaf.rv6 import ulib
from redleaf.rv6.kernel_interface import Rv6Sys
from redleaf.supervisor.instance import Instance

from .manifests import kernel_manifest


class Kernel:
    def __init__(self, inst: Instance, client):
        self.inst = inst
        self.c = client
        self.sys = client.lookup("rv6kernel", Rv6Sys)
        ulib._bind(self.sys)

    def install(self, name: str, source: str) -> str:
        path = f"/bin/{name}"
        fd = ulib.open(path, ulib.O_CREATE | ulib.O_WRONLY | ulib.O_TRUNC)
        try:
            ulib.write(fd, source.encode())
        finally:
            ulib.close(fd)
        return path

    def console(self) -> bytes:
        """What programs wrote to the session's console since the last call."""
        out = bytearray()
        while True:
            piece = self.sys.console_output(ulib.MAX_RW)
            if not piece:
                return bytes(out)
            out += piece

    def run(self, name: str, argv: list[str] | None = None, fds=None) -> tuple[int, bytes]:
        """Spawn /bin/NAME, wait for it while draining the console; (status, output)."""
        pid = ulib.spawn(f"/bin/{name}", argv or [name], fds)
        out = bytearray()
        while True:
            r = self.sys.wait(pid)
            out += self.console()
            if r is not None:
                return r[1], bytes(out + self.console())
            time.sleep(0.002)

    def wait_console(self, needle: bytes, timeout: float = 30.0) -> bytes:
        """Drain the console until `needle` shows up; everything read."""
        seen = bytearray()
        deadline = time.monotonic() + timeout
        while needle not in seen:
            seen += self.console()
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never reached the console; got {bytes(seen)!r}")
            time.sleep(0.002)
        return bytes(seen)

    def os_pid(self, rv6_pid: int) -> int:
        """The OS pid of the domain that runs Rv6 process `rv6_pid`."""
        did = next(p[4] for p in msgpack.unpackb(self.sys.procs()) if p[0] == rv6_pid)
        return next(d["pid"] for d in self.inst.status().values() if d["id"] == did and d["kind"] == "domain")


@pytest.fixture(scope="module")
def kernel():
    img_dir = tempfile.mkdtemp(prefix="rv6k-")
    image = os.path.join(img_dir, "nvme0.img")
    inst = Instance(kernel_manifest(image))
    try:
        inst.start()
        with inst.attach() as c:
            yield Kernel(inst, c)
        # after every program's death: nothing in the heap is owned by a dead domain
        violations = inst.request("heap", check=True)["violations"]
        assert violations == [], violations
    finally:
        ulib._bind(None)
        inst.stop()
        left = inst.leftovers()
        inst.cleanup_log()
        for f in os.listdir(img_dir):
            os.unlink(os.path.join(img_dir, f))
        os.rmdir(img_dir)
        assert not left, f"the kernel instance left things behind: {left}"
