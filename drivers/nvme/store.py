"""Backing stores for the emulated NVMe namespace.

``FileBlockStore`` is a real disk-image file: reads and writes go straight between
the file and DMA memory with ``os.preadv``/``os.pwritev`` on memoryview slices of
the heap mapping (the emulated "hardware" copy, the only copy on the data path).
A completed write is in the file (the OS page cache, so it survives the death of
any process); ``flush()`` makes it durable with ``fdatasync``.

``MemoryBlockStore`` keeps the image in a bytearray, for fast tests.

``read_many``/``write_many`` move a batch of single-buffer transfers (the
controller's batch of simple Reads or Writes).  The file store copies them
through a shared mapping of the image, which costs a third of a ``preadv`` per
4 KiB block: what is written through it is in the same page cache as ``pwritev``
would have put it (it survives the death of any process), and ``flush()`` msyncs
it before ``fdatasync``.

A disk image belongs to one device: ``FileBlockStore`` takes an exclusive
``flock`` on it for its whole life (released by ``close()`` or by the death of the
process), and a second store on the same file -- another device, another instance,
or the same process -- fails with ``ImageInUse`` naming the holder's pid and
command line (found in /proc/locks), instead of two controllers silently
interleaving writes to one namespace.

Calls: the OS only (os, mmap, fcntl, /proc); imports nothing of ours.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import Sequence


class ImageInUse(OSError):
    """The disk image is locked by another store (another device or instance)."""


def lock_holder(fd: int) -> str:
    """Who holds a flock on the file open as `fd`: "pid N (command line)", from
    /proc/locks, or "another process" if it cannot be told (no /proc, or a holder
    in another pid namespace)."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return "another process"
    for ln in lines:
        parts = ln.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (blocked waiters have a "->")
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == ident and parts[4].isdigit():
            pid = int(parts[4])
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as c:
                    cmd = c.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = ""
            return f"pid {pid}" + (f" ({cmd[:200]})" if cmd else "")
    return "another process"


class BlockStore:
    """Byte-addressed backing store.  Offsets and sizes are in bytes."""

    size: int

    def readinto(self, offset: int, views: Sequence[memoryview]) -> None:
        """Fill ``views`` (in order) from ``offset``.  Raises OSError on media errors."""
        raise NotImplementedError

    def writefrom(self, offset: int, views: Sequence[memoryview]) -> None:
        """Write ``views`` (in order) at ``offset``.  Raises OSError on media errors."""
        raise NotImplementedError

    def read_many(self, mem: memoryview, addrs: Sequence[int], offsets: Sequence[int], length: int) -> None:
        """A batch of ``readinto(offset, [mem[addr:addr + length]])``, in order.
        Raises OSError on a media error (some of the batch may have been done)."""
        for a, off in zip(addrs, offsets):
            self.readinto(off, [mem[a:a + length]])

    def write_many(self, mem: memoryview, addrs: Sequence[int], offsets: Sequence[int], length: int) -> None:
        """A batch of ``writefrom(offset, [mem[addr:addr + length]])``, in order."""
        for a, off in zip(addrs, offsets):
            self.writefrom(off, [mem[a:a + length]])

    def write_zeroes(self, offset: int, nbytes: int) -> None:
        z = memoryview(bytes(min(nbytes, 1 << 20)))
        while nbytes > 0:
            n = min(nbytes, len(z))
            self.writefrom(offset, [z[:n]])
            offset += n
            nbytes -= n

    def flush(self) -> None:
        """Make every completed write durable."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileBlockStore(BlockStore):
    """A disk image file.  Created (sparse) at ``size`` bytes if absent.

    If the file exists and ``size`` is given and larger, the file is extended; an
    existing file is never truncated.  ``sync`` picks the flush primitive:
    ``"fdatasync"`` (default), ``"fsync"`` or ``"none"`` (tests/benchmarks only).
    """

    def __init__(self, path: str | os.PathLike, size: int | None = None, *,
                 sync: str = "fdatasync", create: bool = True, map_image: bool = True) -> None:
        if sync == "fdatasync":
            self._sync = getattr(os, "fdatasync", os.fsync)
        elif sync == "fsync":
            self._sync = os.fsync
        elif sync == "none":
            self._sync = None
        else:
            raise ValueError(f"unknown sync mode {sync!r}")
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.path = os.fspath(path)
        self.fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ImageInUse(f"{self.path}: disk image in use by {lock_holder(self.fd)}; "
                                 "an image belongs to one device at a time") from None
            cur = os.fstat(self.fd).st_size
            if size is not None and size > cur:
                os.ftruncate(self.fd, size)
                cur = size
            if cur == 0:
                raise ValueError(f"{self.path}: empty disk image and no size given")
            self.size = cur
        except BaseException:
            os.close(self.fd)
            raise
        self._map = None
        if map_image:
            try:
                self._map = mmap.mmap(self.fd, self.size)
            except (OSError, ValueError, OverflowError):
                self._map = None  # e.g. an image larger than the address space: preadv only
        self.image = memoryview(self._map) if self._map is not None else None

    def readinto(self, offset, views):
        n = os.preadv(self.fd, views, offset)
        want = sum(len(v) for v in views) if len(views) != 1 else len(views[0])
        if n != want:
            self._finish_short(offset, views, n, want, read=True)

    def writefrom(self, offset, views):
        n = os.pwritev(self.fd, views, offset)
        want = sum(len(v) for v in views) if len(views) != 1 else len(views[0])
        if n != want:
            self._finish_short(offset, views, n, want, read=False)

    def read_many(self, mem, addrs, offsets, length):
        image = self.image
        if image is None:
            return super().read_many(mem, addrs, offsets, length)
        self._check_many(offsets, length)
        n = length
        for a, off in zip(addrs, offsets):
            mem[a:a + n] = image[off:off + n]

    def write_many(self, mem, addrs, offsets, length):
        image = self.image
        if image is None:
            return super().write_many(mem, addrs, offsets, length)
        self._check_many(offsets, length)
        n = length
        for a, off in zip(addrs, offsets):
            image[off:off + n] = mem[a:a + n]

    def _check_many(self, offsets, length) -> None:
        if offsets and (min(offsets) < 0 or max(offsets) + length > self.size):
            raise OSError(errno.EIO, "transfer beyond the end of the image")

    def _finish_short(self, offset, views, done, want, *, read):
        # short transfer: continue piecewise (reads past EOF return zeroes)
        pos = 0
        for v in views:
            end = pos + len(v)
            if end > done:
                start = max(0, done - pos)
                part = v[start:]
                off = offset + pos + start
                while len(part):
                    if read:
                        k = os.preadv(self.fd, [part], off)
                        if k == 0:
                            part[:] = bytes(len(part))
                            break
                    else:
                        k = os.pwritev(self.fd, [part], off)
                        if k == 0:
                            raise OSError("pwritev wrote nothing")
                    part = part[k:]
                    off += k
            pos = end

    def flush(self):
        if self._sync is not None:
            if self._map is not None:
                self._map.flush()  # msync: the pages written through the mapping
            self._sync(self.fd)

    def close(self):
        if self.image is not None:
            self.image.release()
            self.image = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MemoryBlockStore(BlockStore):
    """An in-memory image (``bytearray``), for tests."""

    def __init__(self, size: int, data: bytes | None = None) -> None:
        self.buf = bytearray(size)
        if data is not None:
            self.buf[:len(data)] = data
        self.mv = memoryview(self.buf)
        self.size = size
        self.flushes = 0
        self.fail_reads = False     # fault injection: raise EIO
        self.fail_writes = False

    def readinto(self, offset, views):
        if self.fail_reads:
            raise OSError(5, "injected read error")
        mv = self.mv
        for v in views:
            n = len(v)
            v[:] = mv[offset:offset + n]
            offset += n

    def writefrom(self, offset, views):
        if self.fail_writes:
            raise OSError(5, "injected write error")
        mv = self.mv
        for v in views:
            n = len(v)
            mv[offset:offset + n] = v
            offset += n

    def write_zeroes(self, offset, nbytes):
        if self.fail_writes:
            raise OSError(5, "injected write error")
        self.mv[offset:offset + nbytes] = bytes(nbytes)

    def flush(self):
        self.flushes += 1
