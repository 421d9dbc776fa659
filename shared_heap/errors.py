"""Exceptions of the exchange heap, and the root of the project's error hierarchy.

Every message says what went wrong *and* what to do about it: these errors reach users
of the runtime (domain authors, the ``redleaf heap`` command), not only its developers.

Why the root lives here: ``shared_heap`` imports nothing of ours (DESIGN §2), yet its
errors reach callers of cross-domain calls, so the one class every deliberate error of
the project derives from must be defined at this, the lowest, layer.  ``domains``
re-exports it and hangs the call errors under it (see domains/errors.py)::

    RedleafError
    ├── HeapError
    │   ├── OwnershipError
    │   ├── HeapExhausted
    │   └── HeapCorrupt
    └── (domains) RpcError, ControlError, InterfaceError, ...
"""


class RedleafError(Exception):
    """Root of every error this project raises on purpose."""


class HeapError(RedleafError):
    """Base class of every exchange-heap error."""


class OwnershipError(HeapError):
    """A handle was used that this domain may not use (dead, stale, forged, not owned).

    Raised *before* any byte of the object is touched.
    """


class HeapExhausted(HeapError):
    """The arena or the record table has no room left for the request.

    Free objects you no longer need, or give the instance a bigger heap (`size` and
    `records` in the manifest's [heap] section).
    """


class HeapCorrupt(HeapError):
    """The heap file violates an invariant (raised by the checker / on open)."""
