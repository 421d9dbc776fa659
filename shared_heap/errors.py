"""Exceptions of the exchange heap.

Every message says what went wrong *and* what to do about it: these errors reach users
of the runtime (domain authors, the ``redleaf heap`` command), not only its developers.
"""


class HeapError(Exception):
    """Base class of every exchange-heap error."""


class OwnershipError(HeapError):
    """A handle was used that this domain may not use (dead, stale, forged, not owned).

    Raised *before* any byte of the object is touched.
    """


class HeapExhausted(HeapError):
    """The arena or the record table has no room left for the request."""


class HeapCorrupt(HeapError):
    """The heap file violates an invariant (raised by the checker / on open)."""
