"""The package layering of DESIGN §2, checked on every import (module level or inside a
function, absolute or relative): shared_heap <- domains <- supervisor; drivers <- rv6;
drivers import neither rv6 nor the supervisor; rv6 never imports the supervisor; nothing
imports bench or crashtest (both sit on top of everything). Also: every package folder is installed (pyproject's explicit list)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("shared_heap", "domains", "supervisor", "drivers", "rv6", "bench", "crashtest")
# what each part may import (besides itself)
ALLOWED = {
    "shared_heap": set(),
    "domains": {"shared_heap"},
    "supervisor": {"domains", "shared_heap"},
    "drivers": {"domains", "shared_heap"},
    "rv6": {"drivers", "domains", "shared_heap"},
    "bench": {"supervisor", "drivers", "rv6", "domains", "shared_heap"},
    "crashtest": {"supervisor", "drivers", "rv6", "domains", "shared_heap"},
}
#: the tops of the layering: no other part may import them
NOTHING_IMPORTS = ("bench", "crashtest")


def _modules():
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            pkg = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield part, ".".join(parts), pkg, path


def _imported(tree: ast.AST, pkg: list[str]):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                name = ".".join(["redleaf"] + base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, node.lineno


def _part_of(name: str) -> str | None:
    bits = name.split(".")
    if bits[0] == "redleaf" and len(bits) > 1 and bits[1] in PARTS:
        return bits[1]
    if bits[0] in PARTS:
        return "old:" + bits[0]
    return None


def test_no_import_runs_up_the_layers():
    bad = []
    for part, mod, pkg, path in _modules():
        for name, line in _imported(ast.parse(path.read_text(), str(path)), pkg):
            target = _part_of(name)
            if target is None or target == part:
                continue
            if target.startswith("old:"):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {name!r}; use 'redleaf.{name}'")
            elif target not in ALLOWED[part]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {part} imports {name} ({target}): the arrow runs up")
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_tops():
    for top in NOTHING_IMPORTS:
        assert not [p for p, allowed in ALLOWED.items() if top in allowed and p != top], top


def test_every_package_folder_is_installed():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = {"redleaf." + ".".join(p.parent.relative_to(ROOT).parts)
             for part in PARTS for p in (ROOT / part).rglob("__init__.py")}
    assert found == listed, f"not installed: {sorted(found - listed)}; listed but missing: {sorted(listed - found)}"
    assert {k: v for k, v in conf["package-dir"].items()} == {f"redleaf.{p}": p for p in PARTS}
