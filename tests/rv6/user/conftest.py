"""Fixtures for the user programs: a fake kernel (fake_ulib.Kernel) with the programs of
rv6/user installed in /bin, and `from redleaf.rv6 import ulib` bound to the fake while the
test runs."""

from __future__ import annotations

import pytest

from .fake_ulib import Kernel


class Rv6:
    """A test's view: run a shell line or a program, see the console and the files."""

    def __init__(self, kernel: Kernel):
        self.k = kernel

    def sh(self, line: str, stdin: bytes = b"") -> tuple[int, str]:
        """Run `sh -c LINE`; its status and what it wrote to the console (cleared first)."""
        self.k.console.output.clear()
        self.k.console.input[:] = stdin
        status = self.k.run(["sh", "-c", line])
        return status, self.k.console.text()

    def run(self, *argv: str, stdin: bytes = b"") -> tuple[int, str]:
        self.k.console.output.clear()
        self.k.console.input[:] = stdin
        status = self.k.run(list(argv))
        return status, self.k.console.text()

    def write(self, path: str, data: bytes | str) -> None:
        self.k.write_file(path, data.encode() if isinstance(data, str) else data)

    def read(self, path: str) -> bytes:
        return self.k.read_file(path)


@pytest.fixture
def kernel():
    k = Kernel()
    with k.installed():
        yield k
    assert not k.live(), f"processes left running: {k.live()}"


@pytest.fixture
def rv6(kernel) -> Rv6:
    return Rv6(kernel)
