"""Exception types of the runtime, one per failure a caller must tell apart.

Trio's habit: each error is its own type and its message says what to do next.

The tree (the root and the heap errors live in shared_heap/errors.py, the lowest
layer, because shared_heap may import nothing of ours; they are re-exported here)::

    RedleafError                      every error the project raises on purpose
    ├── HeapError
    │   ├── OwnershipError            a handle this domain may not use
    │   ├── HeapExhausted             no room left in the exchange heap
    │   └── HeapCorrupt
    ├── RpcError                      a cross-domain call failed (catch-all for calls)
    │   ├── DomainCrashed
    │   │   └── InstanceGone          (also an InstanceNotRunning: the supervisor died)
    │   ├── DomainUnavailable
    │   ├── RpcTimeout
    │   ├── BadArgument               (also a TypeError)
    │   ├── CallRejected
    │   ├── CallOwnershipError        (also an OwnershipError)
    │   └── CallHeapExhausted         (also a HeapExhausted)
    ├── ControlError
    │   └── InstanceNotRunning
    └── InterfaceError                (also a TypeError)

`except RpcError` around a proxy call catches everything the call can raise besides
the exceptions the interface method declares: the proxy raises heap errors that
belong to a call (a used-after-move argument, an object the callee refused, a callee
that ran out of heap) as `CallOwnershipError` / `CallHeapExhausted`, which are both
an `RpcError` and the heap error, so `except OwnershipError` catches them too.
"""

from redleaf.shared_heap.errors import HeapExhausted, OwnershipError, RedleafError

__all__ = ["RedleafError", "ControlError", "InstanceNotRunning", "InterfaceError", "RpcError",
           "DomainCrashed", "DomainUnavailable", "RpcTimeout", "BadArgument", "CallRejected",
           "CallOwnershipError", "CallHeapExhausted", "OwnershipError", "HeapExhausted", "InstanceGone"]


class ControlError(RedleafError):
    """The supervisor refused a control request (bad input, unknown name, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class InstanceNotRunning(ControlError):
    """No supervisor answers for that instance name."""

    def __init__(self, message: str):
        super().__init__("InstanceNotRunning", message)


class InterfaceError(RedleafError, TypeError):
    """An interface definition breaks the exchangeable-types rules (the IDL check)."""


class RpcError(RedleafError):
    """A cross-domain call failed for a reason other than a declared exception."""


class DomainCrashed(RpcError):
    """The callee died before or during the call; its state is gone.

    The callee is reclaimed and restarted according to its restart policy; a later
    call through the same proxy reaches the new incarnation if there is one.
    """


class InstanceGone(DomainCrashed, InstanceNotRunning):
    """The instance's supervisor died during the call: its domains died with it, so the
    callee is gone and nothing will restart it. `redleaf up` cleans up and starts again."""

    def __init__(self, message: str):
        InstanceNotRunning.__init__(self, message)


class DomainUnavailable(RpcError):
    """The callee is not running (stopped, failed, or still restarting)."""


class RpcTimeout(RpcError):
    """The call's deadline passed; the callee is treated as hung and killed."""


class BadArgument(RpcError, TypeError):
    """An argument or return value does not match the interface signature.

    A return value the callee's interface cannot carry reaches the caller as this
    error too (naming the method); the callee keeps running."""


class CallRejected(RpcError):
    """The callee refused the call (unknown method, malformed request)."""


class CallOwnershipError(RpcError, OwnershipError):
    """A heap handle passed to or returned by a call was refused: dead (moved or
    dropped), lent out, not owned by the sender, stale, or named twice.

    Every argument of a refused call stays with the caller: nothing moves unless
    everything can."""


class CallHeapExhausted(RpcError, HeapExhausted):
    """The exchange heap ran out of room while the callee served the call.

    The callee keeps running; free objects you no longer need and retry, or give the
    instance a bigger heap (`size` and `records` in the manifest's [heap] section)."""
