"""The IDL check: what @interface accepts and how it rejects the rest."""

import subprocess
import sys
import textwrap
import typing
from typing import Any, Optional

import pytest

from redleaf.domains import Borrow, InterfaceError, interface, raises
from redleaf.domains.interface import spec_of


def test_a_good_interface_compiles():
    from redleaf.shared_heap import RRef, RRefDeque, RRefVec, record, u32, u64

    @record
    class Req:
        block: u64
        status: u32

    @interface
    class Other:
        def ping(self) -> None: ...

    @interface
    class Good:
        def a(self) -> None: ...
        def b(self, x: int, y: float, z: bool, s: str, d: bytes) -> tuple[int, str]: ...
        def c(self, o: Optional[int], t: tuple[int, ...]) -> int | None: ...
        def d(self, r: RRef[Req], v: RRefVec, q: RRefDeque[Req]) -> RRef[Req]: ...
        def e(self, r: Borrow[RRefVec]) -> int: ...
        @raises(KeyError)
        def f(self, key: str) -> str: ...
        def g(self, cap: Other) -> None: ...

    spec = spec_of(Good)
    assert [m.name for m in spec.by_index] == list("abcdefg")
    assert spec.methods["e"].params[0][1].borrowed
    assert spec.methods["f"].raises == (KeyError,)
    assert len(spec.fingerprint) == 16


class Arbitrary:
    pass


@pytest.mark.parametrize("sig, message", [
    ("def m(self, x) -> None: ...", "parameter x: missing type annotation"),
    ("def m(self, x: int): ...", "missing return annotation"),
    ("def m(self, x: Any) -> None: ...", "Any is not exchangeable"),
    ("def m(self, x: object) -> None: ...", "object is not exchangeable"),
    ("def m(self, x: Arbitrary) -> None: ...", "Arbitrary is not exchangeable"),
    ("def m(self, x: list[int]) -> None: ...", "mutable or untyped container"),
    ("def m(self, x: dict) -> None: ...", "mutable or untyped container"),
    ("def m(self, x: typing.Union[int, str]) -> None: ...", "unions other than Optional"),
    ("def m(self, *xs: int) -> None: ...", "*args"),
    ("def m(self, x: Borrow[int]) -> None: ...", "Borrow[...] applies to heap handles"),
])
def test_bad_signatures_are_rejected_naming_method_and_parameter(sig, message):
    ns = {"interface": interface, "Any": Any, "Arbitrary": Arbitrary, "typing": typing, "Borrow": Borrow}
    src = "@interface\nclass Bad:\n" + textwrap.indent(sig, "    ")
    with pytest.raises(InterfaceError) as ei:
        exec(src, ns)
    assert message in str(ei.value)
    assert "interface Bad, method m" in str(ei.value)


def test_redleaf_check_reports_compiler_style(tmp_path):
    (tmp_path / "good_mod.py").write_text(textwrap.dedent("""
        from redleaf.domains import interface
        @interface
        class Clock:
            def now(self) -> float: ...
    """))
    (tmp_path / "bad_mod.py").write_text(textwrap.dedent("""
        from redleaf.domains import interface
        @interface
        class Broken:
            def now(self, tz): ...
    """))
    run = lambda mod: subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "check", mod], cwd=tmp_path,
                                     capture_output=True, text=True, timeout=60)
    ok = run("good_mod")
    assert ok.returncode == 0 and "interface good_mod.Clock" in ok.stdout and "now() -> float" in ok.stdout
    bad = run("bad_mod")
    assert bad.returncode == 1
    # compiler-style: file:line of the method, then what is wrong
    loc = f"{tmp_path / 'bad_mod.py'}:5: "
    assert f"error: {loc}interface Broken, method now, parameter tz: missing type annotation" in bad.stderr
    assert "missing return annotation" in bad.stderr
