"""Sizes as people write them in manifests, configs and flags ("256MiB", 4096).

Owns: parse_size. Calls: nothing of ours. It lives here, below both the supervisor (manifests)
and the drivers (device configs), so that neither has to import the other for it.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|B)?\s*$", re.I)


class SizeError(ValueError):
    """A value that is not a size; the message names where it came from and shows the forms."""


def parse_size(v, where: str) -> int:
    """Bytes from a positive int or a string like "512", "64KiB", "256M", "1GiB" (powers of 2)."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    if isinstance(v, str):
        m = _SIZE_RE.match(v)
        if m and int(m.group(1)) > 0:
            n = int(m.group(1))
            unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
            return n * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    raise SizeError(f"{where}: {v!r} is not a size (write e.g. 268435456 or \"256MiB\")")
