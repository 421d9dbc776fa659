"""The domain runtime: interfaces, validated proxies, channels, the domain host, and
attach() for client processes.

Errors: see domains/errors.py for the tree.  `RpcError` catches everything a proxy
call raises besides the method's declared exceptions; `RedleafError` everything the
project raises on purpose."""

from .errors import (BadArgument, CallHeapExhausted, CallOwnershipError, CallRejected, ControlError,
                     DomainCrashed, DomainUnavailable, HeapExhausted, InstanceGone, InstanceNotRunning, InterfaceError,
                     OwnershipError, RedleafError, RpcError, RpcTimeout)
from .interface import Borrow, interface, raises

__all__ = ["attach", "interface", "raises", "Borrow", "RedleafError", "RpcError", "DomainCrashed",
           "DomainUnavailable", "RpcTimeout", "BadArgument", "CallRejected", "CallOwnershipError",
           "CallHeapExhausted", "OwnershipError", "HeapExhausted", "ControlError", "InstanceNotRunning", "InstanceGone",
           "InterfaceError"]


def attach(instance: str = "default", timeout_s: float = 10.0):
    from .client import attach as _attach

    return _attach(instance, timeout_s)
