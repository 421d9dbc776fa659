"""Doorbells: how one process wakes another that sleeps, without a shared lock.

Each domain has one doorbell, a FIFO in the runtime directory, and a `sleeping`
word in its runtime area of the heap.  A sleeper sets the word, fences, re-checks
its work, and blocks in poll() on the FIFO; a waker publishes its work, fences, and
writes one byte to the FIFO only if the word is set.  Both sides fence, so one of
them always sees the other (Dekker's pattern); a bounded poll timeout is the backstop.

The fence: acquiring and releasing an uncontended threading.Lock executes a locked
instruction, which is a full memory barrier on x86-64 (the only platform we run on:
domains/channel.py says why; on aarch64 it would be an acquire and a release, not
a full barrier).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading
from pathlib import Path

_fence_lock = threading.Lock()


def fence() -> None:
    _fence_lock.acquire()
    _fence_lock.release()


def make_bell(path: Path) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise


class Bell:
    """An open doorbell FIFO.  O_RDWR so opening never blocks and never sees EOF."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def ring(self) -> None:
        try:
            os.write(self.fd, b"\x01")
        except BlockingIOError:
            pass  # the FIFO is full of unread rings: the sleeper will wake anyway
        except OSError as e:
            if e.errno not in (errno.EPIPE,):
                raise

    def drain(self) -> None:
        try:
            while len(os.read(self.fd, 4096)) == 4096:  # a short read emptied it
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# Runtime area: 64 bytes per domain inside the heap's domain table, written only by
# the domain itself (the supervisor reads it).
RA_HEARTBEAT = 0  # u64, bumped by the host loop; the watchdog checks it moves
RA_CALLS_SERVED = 8  # u64
RA_SLEEPING = 16  # u32, 1 while blocked on its doorbell
RA_CALLS_MADE = 24  # u64
RA_BUSY = 32  # u32, 1 while executing a call (a busy domain's heartbeat may pause)

U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")


class PeerWaker:
    """Wake a peer domain if (and only if) it is asleep."""

    __slots__ = ("bell", "area")

    def __init__(self, bell: Bell, area: memoryview):
        self.bell = bell
        self.area = area

    def refresh(self) -> None:
        """Point this waker at the doorbell now at its path.

        Domain ids are reused, and a dead domain's FIFO is unlinked; a new
        incarnation with the same id makes a new FIFO at the same path.  A cached
        fd of the old one would ring nobody, so after every (re)connection to a
        peer the fd is checked and, if stale, replaced in place (dup2), so that
        every holder of this waker rings the live doorbell."""
        bell = self.bell
        try:
            st = os.stat(bell.path)
        except FileNotFoundError:
            return  # the peer is gone; the next lookup finds its successor
        if bell.fd >= 0 and os.fstat(bell.fd).st_ino == st.st_ino:
            return
        fd = os.open(bell.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        if bell.fd >= 0:
            os.dup2(fd, bell.fd, inheritable=False)
            os.close(fd)
        else:
            bell.fd = fd

    def asleep(self) -> bool:
        """Is the peer asleep?  Fenced: call after publishing the work it must see."""
        fence()
        return bool(self.area[RA_SLEEPING])

    def wake(self) -> bool:
        """Returns True if the peer was asleep (so it had to be rung)."""
        if self.asleep():
            self.bell.ring()
            return True
        return False
