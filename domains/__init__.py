"""The domain runtime: interfaces, validated proxies, channels, the domain host, and
attach() for client processes."""

from .errors import (BadArgument, CallRejected, ControlError, DomainCrashed, DomainUnavailable,
                     InstanceNotRunning, InterfaceError, RedleafError, RpcError, RpcTimeout)
from .interface import Borrow, interface, raises

__all__ = ["attach", "interface", "raises", "Borrow", "RedleafError", "RpcError", "DomainCrashed",
           "DomainUnavailable", "RpcTimeout", "BadArgument", "CallRejected", "ControlError",
           "InstanceNotRunning", "InterfaceError"]


def attach(instance: str = "default", timeout_s: float = 10.0):
    from .client import attach as _attach

    return _attach(instance, timeout_s)
