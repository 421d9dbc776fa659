"""Pre-flight: can each target of a manifest (or of a `load`) be imported, and is it a
class a domain can be built from? Run before anything boots, so a typo fails `redleaf up`
or `redleaf load` with the import error's own last line, not a crash loop found later in
`redleaf logs`.

Owns: the check and its child process. Calls: nothing of ours at import time; the child
imports the targets (domain code never runs inside the supervisor or the CLI: a module
that calls os._exit or sleeps at import only ends or stalls the child, which has a
deadline). Checks: the module imports, the attribute exists and is a class, and a domain
target is not an @interface itself (a domain class implements one).
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback

DEADLINE_S = 60.0
_IFACE_ATTR = "__redleaf_interface__"


def _check_one(item: dict) -> str | None:
    from redleaf.domains.host import import_target

    target = item["target"]
    try:
        cls = import_target(target, item.get("path"))
    except BaseException as e:   # SystemExit from a module is a failed import too
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return f"cannot import {target}: {last}"
    if not isinstance(cls, type):
        return f"{target} is a {type(cls).__name__}, not a class"
    if item.get("kind", "domain") == "domain" and _IFACE_ATTR in cls.__dict__:
        return (f"{target} is the @interface itself, not a domain: load a class that subclasses "
                f"{cls.__name__} and implements its methods")
    return None


def _child() -> None:
    items = json.loads(sys.stdin.read())
    for p in {i.get("path") for i in items} - {None}:
        if p not in sys.path:
            sys.path.append(p)
    out = {}
    for item in items:
        out[item["name"]] = _check_one(item)
    sys.stdout.write(json.dumps(out))


def check_targets(items: list[dict], timeout_s: float = DEADLINE_S) -> dict[str, str]:
    """{name: problem} for each item ({name, target, kind, path}) that will not load."""
    if not items:
        return {}
    try:
        r = subprocess.run([sys.executable, "-m", "redleaf.supervisor.preflight"], input=json.dumps(items),
                           capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {i["name"]: f"importing the targets took longer than {timeout_s:.0f}s "
                           f"({', '.join(sorted({x['target'] for x in items}))})" for i in items}
    try:
        found = json.loads(r.stdout)
    except ValueError:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return {i["name"]: f"importing {i['target']} ended the check: {last}" for i in items}
    return {k: v for k, v in found.items() if v}


if __name__ == "__main__":
    _child()
