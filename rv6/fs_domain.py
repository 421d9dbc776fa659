"""FsDomain: Rv6's file-system domain. It exports the `FileSystem` interface
(rv6/fs_interface.py) over the core file system (rv6/fs/fs.py) on a block device
domain it is granted in the manifest.

Owns: the mounted core FileSystem, its descriptor table and who opened each descriptor,
the BDevDisk adapter. Calls: the
core fs layers (rv6/fs), the `BDev` and `NvmeBDev` proxies (redleaf.drivers.bdev) and the domain runtime
(its heap); never the supervisor.

Manifest:

    [[domain]]
    name = "rv6fs"
    target = "redleaf.rv6.fs_domain:FsDomain"
    uses = ["nvme0"]
    config = { bdev = "nvme0", mkfs_if_blank = true, cache_mb = 32 }

`cache_mb` sizes the block cache (default CACHE_MB): the domain's page cache, which
holds what was read or written lately, as the host's does for its files.
`bdev_deadline_s` (default BDEV_DEADLINE_S) is how long a call to the block device may
take before the device is taken for hung: shorter than our own clients' deadline, so
that a hung device is found (and replaced) by us, not this domain by our clients.

Construction mounts the device: the log replays, so after a crash (kill -9 of this
domain, then the supervisor's restart) every fsync'd byte is back. A device that holds no
Rv6 file system is formatted first only if `mkfs_if_blank` is set and it reads as blank
(BDevDisk.looks_blank); anything else (a foreign image, an Rv6 image of another version, a
damaged one) fails the start with an error that says which, and nothing is written.
A blank device is formatted with the user programs in /bin (and /dev), as `redleaf mkfs`
does; `install_programs = false` leaves it empty.

Descriptors belong to the client that opened them (its domain id and channel): another
client naming one, or a new client that inherited a dead one's domain id, gets EBADF, so
a client can neither guess its way into another's open files nor, after this domain
restarts and numbers descriptors afresh, reach one with a stale number.  A dead
client's descriptors are closed when the next open finds it gone.

Boundary checks: each argument a caller controls is checked here before the core sees it
(descriptors, sizes, offsets, the byte vector's type and length, paths), and answered with
FsError EINVAL/EBADF/..., so bad input never panics the domain. A panic is left for what
is not the caller's fault: a bug, or a device that lost a commit half-way (then the
log is marked failed; the domain panics so that its restart remounts and replays the last
commit instead of answering EIO forever).
"""

from __future__ import annotations

import dataclasses
import errno
import time

import msgpack
import numpy as np

from redleaf.domains.errors import ControlError
from redleaf.drivers.bdev import BDev, NvmeBDev
from redleaf.shared_heap import RRefVec

from .fs.bdev_disk import BDevDisk
from .fs.errors import FsError, NotRv6Error
from .fs.format import BSIZE, T_DIR
from .fs.fs import _S_IFMT, FileSystem as CoreFs
from .fs.mkfs import mkfs_device
from .fs_interface import MAX_IO, FileSystem, StatFsTuple, StatTuple

#: bytes of encoded entries in one readdir page: well under the 64 KiB inline limit, and a page is a few hundred entries
READDIR_PAGE_BYTES = 16 * 1024
#: the largest offset or size a caller may name (2**63 - 1, off_t's range)
MAX_OFF = (1 << 63) - 1
PATH_MAX = 4096
#: the block cache's default size in MiB (config `cache_mb`)
CACHE_MB = 32
#: our deadline for a call to the block device (config `bdev_deadline_s`): under the
#: FileSystem interface's 30 s, above what the NVMe shadow takes to replace a hung
#: driver (its driver_deadline_s, 10 s, and a restart)
BDEV_DEADLINE_S = 20.0


class FsInitError(RuntimeError):
    """The domain cannot mount its device (say why; the start fails)."""


class LogFailed(RuntimeError):
    """The device failed under a commit: panic, so the restart replays the log."""


def _check_path(path) -> str:
    if not isinstance(path, str):
        raise FsError(errno.EINVAL, f"a path is a str, not {type(path).__name__}")
    if not path.startswith("/"):
        raise FsError(errno.EINVAL, f"{path!r}: paths across the interface are absolute")
    if "\0" in path:
        raise FsError(errno.EINVAL, f"{path!r} holds a NUL byte")
    if len(path.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise FsError(errno.ENAMETOOLONG, f"a path of more than {PATH_MAX} bytes")
    return path


def _check_int(v, what: str, lo: int = 0, hi: int = MAX_OFF) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise FsError(errno.EINVAL, f"{what} {v!r} is outside {lo}..{hi}")
    return v


def _check_fd(fd) -> int:
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise FsError(errno.EBADF, f"{fd!r} is not an open file descriptor")
    return fd


def _bytes_view(buf: RRefVec, n: int, what: str) -> np.ndarray:
    """The first n bytes of a caller's byte vector, checked."""
    _check_int(n, f"{what}: count", 0, MAX_IO)
    if buf.elem_type != np.uint8:
        raise FsError(errno.EINVAL, f"{what}: the buffer holds {buf.elem_type}, not uint8")
    if n > len(buf):
        raise FsError(errno.EINVAL, f"{what}: count {n} exceeds the buffer's {len(buf)} bytes")
    return buf.np[:n]


class FsDomain(FileSystem):
    def __init__(self, ctx):
        self.ctx = ctx
        self.rt = ctx.rt
        self.owners: dict[int, tuple[int, int]] = {}  # descriptor -> (domain id, channel) of its opener
        cfg = ctx.config
        role = cfg.get("bdev", "nvme0")
        bdev, batched = ctx.use(role, BDev), self._batched(ctx, role)
        # A device that hangs inside a call is found by its caller's deadline.  Ours must
        # pass well before our own clients' (FileSystem's 30 s): else a client's
        # RpcTimeout kills this domain first, the hung device is left with no caller to
        # report it, and the restarted fs waits out a whole deadline again on its mount
        # (found by crashtest: a shadow hang took 60 s and more to be noticed).
        bdev_deadline = cfg.get("bdev_deadline_s", BDEV_DEADLINE_S)
        if not isinstance(bdev_deadline, (int, float)) or isinstance(bdev_deadline, bool) or \
                not 0 < bdev_deadline <= 30:
            raise FsInitError(f"bdev_deadline_s = {bdev_deadline!r}: give seconds, more than 0 and at most 30 "
                              f"(the device interface's own deadline)")
        for p in (bdev, batched):
            link = getattr(p, "_rl_link", None)  # a proxy's own link (absent in a group: no hang to outlive)
            if link is not None and hasattr(link, "deadline"):
                link.deadline = float(bdev_deadline)
        self.disk = BDevDisk(ctx.heap, bdev, batched)
        cache_mb = cfg.get("cache_mb", CACHE_MB)
        if not isinstance(cache_mb, int) or isinstance(cache_mb, bool) or not 1 <= cache_mb <= 1 << 16:
            raise FsInitError(f"cache_mb = {cache_mb!r}: give the block cache's size in MiB, 1..65536")
        self.cache_blocks = cache_mb * (1 << 20) // BSIZE
        try:
            self.fs = CoreFs(self.disk, time.time_ns, cache_blocks=self.cache_blocks)
        except NotRv6Error as e:
            if not cfg.get("mkfs_if_blank", False):
                raise FsInitError(f"device {role!r} holds no Rv6 file system ({e.strerror}); "
                                  "run `redleaf mkfs` on its image or set mkfs_if_blank") from None
            if not self.disk.looks_blank():
                raise FsInitError(f"device {role!r} is not blank and holds no Rv6 file system "
                                  f"({e.strerror}); refusing to format over it") from None
            self.formatted = mkfs_device(self.disk, inodes=cfg.get("inodes"), now_ns=time.time_ns(),
                                         programs=cfg.get("install_programs", True))
            self.fs = CoreFs(self.disk, time.time_ns, cache_blocks=self.cache_blocks)
        else:
            self.formatted = None
        print(f"rv6fs: mounted {role} ({self.disk.nblocks} blocks"
              f"{', formatted blank device' if self.formatted else ''}; "
              f"log replayed {self.fs.recovered} blocks, {self.fs.orphans_freed} orphans freed)", flush=True)

    @staticmethod
    def _batched(ctx, role: str):
        """The device's NvmeBDev (batches: one doorbell per 32 blocks), or None when it
        exports only BDev (then a block a call)."""
        try:
            return ctx.use(role, NvmeBDev)
        except ControlError as e:
            if e.kind != "InterfaceMismatch":
                raise
            print(f"rv6fs: {role} offers no NvmeBDev ({e}); one block a call through BDev", flush=True)
            return None

    def _after(self) -> None:
        """A device error during a commit stops the log (the core answers EIO from
        then on); panic instead, so the restart remounts and replays."""
        if self.fs.log.failed:
            raise LogFailed(f"the log stopped: {self.fs.log.failed}")

    def _call(self, fn, *args):
        try:
            return fn(*args)
        finally:
            self._after()

    # --- descriptors and data ------------------------------------------------------------

    def _caller(self) -> tuple[int, int]:
        ch = self.rt.serving
        return ch.caller, ch.chan_id

    def _fd(self, fd) -> int:
        """`fd`, if it is an open descriptor of the calling client's; else EBADF."""
        fd = _check_fd(fd)
        owner = self.owners.get(fd)
        if owner is None:
            raise FsError(errno.EBADF, f"{fd} is not an open file descriptor")
        did, chan_id = self._caller()
        if owner[0] != did:
            raise FsError(errno.EBADF, f"{fd} is not an open file descriptor of this client")
        if owner[1] != chan_id:
            if self.rt.client_alive(owner[1]):
                self.owners[fd] = (did, chan_id)  # the same client, on another channel
            else:  # a new client under a dead one's domain id: not its descriptor
                self._close_gone()
                raise FsError(errno.EBADF, f"{fd} belonged to an earlier client with this domain id")
        return fd

    def _close_gone(self) -> None:
        """Close the descriptors of clients that are gone (their channels closed)."""
        alive: dict[int, bool] = {}
        for fd, (_did, chan_id) in list(self.owners.items()):
            if chan_id not in alive:
                alive[chan_id] = self.rt.client_alive(chan_id)
            if not alive[chan_id]:
                del self.owners[fd]
                try:
                    self.fs.close(fd)
                except FsError:
                    pass

    def open(self, path: str, flags: int, mode: int) -> int:
        _check_int(flags, "flags", 0, 0xFFFFFFFF)
        _check_int(mode, "mode", 0, 0o7777)
        path = _check_path(path)
        self._close_gone()
        owner = self._caller()  # now: the open may serve another client's call while it waits on the device
        fd = self._call(self.fs.open, path, flags, mode)
        self.owners[fd] = owner
        return fd

    def close(self, fd: int) -> None:
        fd = self._fd(fd)
        del self.owners[fd]
        self._call(self.fs.close, fd)

    def read(self, fd: int, buf: RRefVec, n: int) -> tuple[int, RRefVec]:
        view = _bytes_view(buf, n, "read")
        got = self._call(self.fs.readinto, self._fd(fd), view)
        return got, buf

    def pread(self, fd: int, buf: RRefVec, n: int, offset: int) -> tuple[int, RRefVec]:
        view = _bytes_view(buf, n, "pread")
        got = self._call(self.fs.preadinto, self._fd(fd), view, _check_int(offset, "offset"))
        return got, buf

    def write(self, fd: int, buf: RRefVec, n: int) -> int:
        view = _bytes_view(buf, n, "write")
        return self._call(self.fs.write, self._fd(fd), view)

    def pwrite(self, fd: int, buf: RRefVec, n: int, offset: int) -> int:
        view = _bytes_view(buf, n, "pwrite")
        return self._call(self.fs.pwrite, self._fd(fd), view, _check_int(offset, "offset"))

    def seek(self, fd: int, offset: int, whence: int) -> int:
        _check_int(offset, "offset", -MAX_OFF, MAX_OFF)
        return self._call(self.fs.seek, self._fd(fd), offset, whence)

    def fstat(self, fd: int) -> StatTuple:
        return dataclasses.astuple(self._call(self.fs.fstat, self._fd(fd)))

    def ftruncate(self, fd: int, size: int) -> None:
        self._call(self.fs.ftruncate, self._fd(fd), _check_int(size, "size"))

    def fsync(self, fd: int) -> None:
        self._call(self.fs.fsync, self._fd(fd))

    # --- the tree --------------------------------------------------------------------------

    def stat(self, path: str) -> StatTuple:
        return dataclasses.astuple(self._call(self.fs.stat, _check_path(path)))

    def mkdir(self, path: str, mode: int) -> None:
        self._call(self.fs.mkdir, _check_path(path), _check_int(mode, "mode", 0, 0o7777))

    def mknod(self, path: str, mode: int, major: int, minor: int) -> None:
        _check_int(mode, "mode", 0, 0xFFFFFFFF)
        self._call(self.fs.mknod, _check_path(path), mode, _check_int(major, "major", 0, 0xFFFF),
                   _check_int(minor, "minor", 0, 0xFFFF))

    def link(self, old: str, new: str) -> None:
        self._call(self.fs.link, _check_path(old), _check_path(new))

    def unlink(self, path: str) -> None:
        self._call(self.fs.unlink, _check_path(path))

    def rmdir(self, path: str) -> None:
        self._call(self.fs.rmdir, _check_path(path))

    def rename(self, old: str, new: str) -> None:
        self._call(self.fs.rename, _check_path(old), _check_path(new))

    def readdir(self, path: str, cookie: int) -> tuple[bytes, int]:
        """A page of [name, ino, type] from the entry at byte `cookie` of the directory
        on. The cookie is a position in the directory, not an index, so entries made
        or removed between pages shift nothing: every entry present throughout is
        listed exactly once (POSIX leaves the others unspecified)."""
        _check_path(path)
        _check_int(cookie, "cookie")
        return self._call(self._readdir_page, path, cookie)

    def _readdir_page(self, path: str, cookie: int) -> tuple[bytes, int]:
        fs = self.fs
        fs._live()
        dp = fs.paths.namei(path)
        if dp.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"{path!r} is not a directory")
        out, size = [], 0
        for off, name, inum in fs.dirs.entries(dp):
            if off < cookie:
                continue
            ip = fs.inodes.iget(inum)
            if ip.d.type not in _S_IFMT:
                raise FsError(errno.EIO, f"{path!r}: entry {name!r} names free inode {inum}")
            try:
                # the interface's strings are UTF-8 (msgpack): a name that is not (a
                # damaged block, or bytes another tool wrote) once escaped as
                # UnicodeEncodeError and panicked the domain (found by the fscalls fuzzer)
                uname = name.decode("utf-8")
            except UnicodeDecodeError:
                raise FsError(errno.EIO, f"{path!r}: entry {name!r} (inode {inum}) is not a UTF-8 name, "
                                         f"which the interface cannot carry") from None
            ent = [uname, inum, _S_IFMT[ip.d.type]]
            # msgpack's overhead per entry is a few bytes; NAME_MAX + 32 bounds it
            if out and size + len(name) + 32 > READDIR_PAGE_BYTES:
                return msgpack.packb(out), off
            out.append(ent)
            size += len(name) + 32
        return msgpack.packb(out), 0

    def truncate(self, path: str, size: int) -> None:
        self._call(self.fs.truncate, _check_path(path), _check_int(size, "size"))

    def sync(self) -> None:
        self._call(self.fs.sync)

    def statfs(self) -> StatFsTuple:
        return dataclasses.astuple(self._call(self.fs.statfs))

    def chmod(self, path: str, mode: int) -> None:
        self._call(self.fs.chmod, _check_path(path), _check_int(mode, "mode", 0, 0o7777))

    def utimens(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        lo, hi = -(1 << 63), (1 << 63) - 1
        self._call(self.fs.utimens, _check_path(path),
                   (_check_int(atime_ns, "atime_ns", lo, hi), _check_int(mtime_ns, "mtime_ns", lo, hi)))

    def shutdown(self) -> None:
        """A clean stop (the runtime calls it): commit and flush, so the next mount
        replays nothing. The device may already be gone (the instance stops domains
        after their clients, but a device can fail on its own): then what was
        committed is in the log and the next mount replays it, so the error is only
        reported, never raised out of a stop."""
        try:
            if self.fs.mounted and not self.fs.log.failed:
                self.fs.unmount()
        except Exception as e:
            print(f"rv6fs: unmount at stop failed ({e}); the next mount replays the log", flush=True)
