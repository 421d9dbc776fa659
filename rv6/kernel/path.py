"""Path resolution against a process's working directory.

Owns: turning a user path (relative or absolute) into the absolute, normalised path the
fs interface takes. Calls only errors.py. Resolution is lexical (Rv6 has no symbolic
links, so `a/../b` is `b` exactly as the fs's own walk would find it); whether the
directories exist is the fs's answer, not ours.
"""

from __future__ import annotations

import errno

from .errors import Rv6Error

PATH_MAX = 4096


def check(path) -> str:
    if not isinstance(path, str):
        raise Rv6Error(errno.EINVAL, f"a path is a str, not {type(path).__name__}")
    if path == "":
        raise Rv6Error(errno.ENOENT, "an empty path names nothing")
    if "\0" in path:
        raise Rv6Error(errno.EINVAL, f"{path!r} holds a NUL byte")
    if len(path.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise Rv6Error(errno.ENAMETOOLONG, f"a path of more than {PATH_MAX} bytes")
    return path


def resolve(cwd: str, path: str) -> str:
    """The absolute normalised form of `path` seen from directory `cwd` (absolute)."""
    check(path)
    full = path if path.startswith("/") else (cwd.rstrip("/") + "/" + path)
    parts: list[str] = []
    for part in full.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    out = "/" + "/".join(parts)
    if len(out.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise Rv6Error(errno.ENAMETOOLONG, f"{path!r} resolves to more than {PATH_MAX} bytes")
    return out
