"""Exception types of the runtime, one per failure a caller must tell apart.

Trio's habit: each error is its own type and its message says what to do next.
`RpcError` is the root of everything a cross-domain call can raise besides the
exceptions the interface method itself declares.
"""


class RedleafError(Exception):
    """Root of every error this project raises on purpose."""


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


class DomainUnavailable(RpcError):
    """The callee is not running (stopped, failed, or still restarting)."""


class RpcTimeout(RpcError):
    """The call's deadline passed; the callee is treated as hung and killed."""


class BadArgument(RpcError, TypeError):
    """An argument or return value does not match the interface signature."""


class CallRejected(RpcError):
    """The callee refused the call (unknown method, malformed request, bad RRef)."""
