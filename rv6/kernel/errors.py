"""Rv6's system-call error: an OSError carrying a POSIX errno, as a libc would see it.

Owns: `Rv6Error` and `WOULD_BLOCK`. Calls nothing. Every kernel layer raises Rv6Error;
the system-call interface declares it, so it crosses to the user program intact
(`e.errno`, the message in words). `WOULD_BLOCK` is the answer of a layer whose call
cannot finish yet (an empty pipe, a child still running): the kernel never waits, its
caller retries (see rv6/ulib.py).
"""

from __future__ import annotations

import errno as _errno


class Rv6Error(OSError):
    """A system call failed; `errno` says why in POSIX terms, the message in words."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)

    def __str__(self) -> str:
        return f"{self.strerror} ({_errno.errorcode.get(self.errno, self.errno)})"


class _WouldBlock:
    """The single 'not yet' value (a sentinel, never an error)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WOULD_BLOCK"

    def __bool__(self) -> bool:
        return False


WOULD_BLOCK = _WouldBlock()
