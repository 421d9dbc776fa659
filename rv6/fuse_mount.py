"""`redleaf mount`: Rv6's file system on a Linux directory through FUSE (libfuse3, mfusepy).

Owns: the FUSE operations (`Rv6Fuse`) over any object with the methods of
`rv6.fs_interface.FileSystem` (the fs domain's proxy, or a stand-in in tests), the mount
loop (`serve`), and the mount process (`main`: attach to an instance as a client domain,
look up the exported FileSystem, mount DIR, serve until unmounted or signalled).
Calls: the FileSystem interface's methods only, and `heap.alloc_vec` for data buffers.

Contract:
- Paths go to the fs as they are (absolute); FUSE file handles are our own numbers mapped
  to fs descriptors (`open`/`create` allocate, `release` closes).
- Data: one RRefVec of MAX_IO bytes is reused for every read and write (the loop is one
  thread, see `serve`): a read moves it into the fs and gets it back with the count; a
  write borrows it.
- Read-ahead: the kernel asks for a sequential file in 128 KiB requests (its readahead
  window for a FUSE mount); where a handle reads on from where it stopped, the mount
  reads READAHEAD (1 MiB) in one fs call and answers the next requests from it, as the
  kernel's own readahead answers from pages it read early. A write or truncate through
  the mount drops every window; a change another client of the fs makes is seen from
  the next window on (the kernel's page cache of an open file has the same horizon). A read the fs refuses (FsError) gives the moved vector up, as a
  declared error does across a domain boundary, so the next read allocates a new one.
- Errors: FsError is an OSError with a POSIX errno and reaches the kernel as -errno;
  anything else (the fs domain crashed, timed out, ...) is logged and answers EIO, so a
  tool sees an I/O error, never a wrong answer and never a dead mount.
- Not in the interface, answered honestly: symlinks (ENOSYS, tools fall back), chown to
  other ids than the current ones (EPERM; to the same ids it is the no-op POSIX says),
  RENAME_EXCHANGE (EINVAL). RENAME_NOREPLACE is a stat then a rename: atomic against this
  mount's own callers (one loop thread), not against other clients of the same fs domain.
- hard_remove: an unlinked open file is read and written through its handle, but fstat
  on it answers ESTALE (the kernel asks by path, and it has none): libfuse's alternative,
  renaming it to .fuse_hidden*, would make rmdir of its directory fail instead.
- A mount process killed without unmounting leaves an "endpoint not connected" mount;
  `redleaf umount` clears it with `fusermount3 -u`, falling back to `-u -z`.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import os
import stat as st
import sys
import time

import msgpack
import mfusepy
import numpy as np

from .fs_interface import MAX_IO, STAT_FIELDS, STATFS_FIELDS

#: how much a sequential read asks the fs for at once (see the module's note)
READAHEAD = MAX_IO

log = logging.getLogger("redleaf.rv6.mount")

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _eio(op: str, e: BaseException) -> mfusepy.FuseOSError:
    log.error("rv6 mount: %s failed outside the fs's declared errors: %r", op, e)
    return mfusepy.FuseOSError(errno.EIO)


def _guard(fn):
    """Declared errors (FsError, any OSError with an errno) pass as they are; anything else
    is EIO. Why: mfusepy answers an unknown exception with EINVAL, which tells a tool its
    arguments were wrong when the fs domain crashed or timed out."""
    def op(self, *args):
        try:
            return fn(self, *args)
        except OSError as e:
            if isinstance(e.errno, int) and e.errno > 0:
                raise
            raise _eio(fn.__name__, e) from e
        except Exception as e:
            raise _eio(fn.__name__, e) from e
    op.__name__ = fn.__name__
    op.__doc__ = fn.__doc__
    return op


class Rv6Fuse(mfusepy.Operations):
    """mfusepy's operations over an object with the FileSystem interface's methods."""

    use_ns = True           # times cross as ns ints, as the interface's stat tuples hold them

    def __init__(self, fs, heap):
        self.fs = fs
        self.heap = heap
        self._vec = None              # the one data buffer (an RRefVec of MAX_IO bytes)
        self._fds: dict[int, int] = {}  # FUSE file handle -> fs descriptor
        self._next_fh = 1
        self.vec_allocs = 0           # how many buffers were allocated (tests check reuse)
        self._ra: dict[int, tuple[int, bytes, bool]] = {}  # fh -> read-ahead window (offset, data, at EOF)
        self._next: dict[int, int] = {}  # fh -> where its last read ended

    # --- helpers -----------------------------------------------------------------------

    def _buf(self):
        if self._vec is None:
            self._vec = self.heap.alloc_vec(np.uint8, MAX_IO)
            self.vec_allocs += 1
        return self._vec

    def _fd(self, fh) -> int:
        try:
            return self._fds[fh]
        except KeyError:
            raise mfusepy.FuseOSError(errno.EBADF) from None

    def _new_fh(self, fd: int) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._fds[fh] = fd
        return fh

    @staticmethod
    def _attrs(t) -> dict:
        d = dict(zip(STAT_FIELDS, t))
        return {"st_ino": d["st_ino"], "st_mode": d["st_mode"], "st_nlink": d["st_nlink"],
                "st_uid": d["st_uid"], "st_gid": d["st_gid"], "st_size": d["st_size"],
                "st_blocks": d["st_blocks"], "st_blksize": d["st_blksize"], "st_rdev": d["st_rdev"],
                "st_atime": d["st_atime_ns"], "st_mtime": d["st_mtime_ns"], "st_ctime": d["st_ctime_ns"]}

    # --- attributes and names ----------------------------------------------------------

    @_guard
    def getattr(self, path, fh=None):
        # an unlinked open file (hard_remove) has no path: its handle still names it
        if fh is not None and fh in self._fds:
            return self._attrs(self.fs.fstat(self._fds[fh]))
        return self._attrs(self.fs.stat(path))

    @_guard
    def readdir(self, path, fh):
        # (name, {ino, type}, 0): with use_ino the kernel shows d_ino as given, and readdir(3)
        # skips entries whose d_ino is 0, so every entry carries its inode number
        out, seen, cookie = [], set(), 0
        while True:
            page, cookie = self.fs.readdir(path, cookie)
            for name, ino, typ in msgpack.unpackb(page):
                out.append((name, {"st_ino": ino, "st_mode": typ}, 0))
                seen.add(name)
            if not cookie:
                break
        # the kernel expects . and ..; the fs may leave them out of its listing
        if ".." not in seen:
            parent = path.rsplit("/", 1)[0] or "/"
            out.insert(0, ("..", {"st_ino": self.fs.stat(parent)[0], "st_mode": st.S_IFDIR}, 0))
        if "." not in seen:
            out.insert(0, (".", {"st_ino": self.fs.stat(path)[0], "st_mode": st.S_IFDIR}, 0))
        return out

    @_guard
    def mkdir(self, path, mode):
        self.fs.mkdir(path, mode & 0o7777)

    @_guard
    def mknod(self, path, mode, dev):
        if st.S_IFMT(mode) in (0, st.S_IFREG):
            # a regular file: created like open(O_CREAT|O_EXCL) so the fs sets it up as open does
            self.fs.close(self.fs.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode & 0o7777))
            return
        self.fs.mknod(path, mode, os.major(dev), os.minor(dev))

    @_guard
    def unlink(self, path):
        self.fs.unlink(path)

    @_guard
    def rmdir(self, path):
        self.fs.rmdir(path)

    @_guard
    def rename(self, old, new, flags=0):
        if flags & RENAME_EXCHANGE:
            raise mfusepy.FuseOSError(errno.EINVAL)
        if flags & RENAME_NOREPLACE:
            try:
                self.fs.stat(new)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
            else:
                raise mfusepy.FuseOSError(errno.EEXIST)
        self.fs.rename(old, new)

    @_guard
    def link(self, target, source):
        # mfusepy passes (new name, existing file), as `ln source target`
        self.fs.link(source, target)

    @_guard
    def symlink(self, target, source):
        raise mfusepy.FuseOSError(errno.ENOSYS)

    @_guard
    def chmod(self, path, mode):
        self.fs.chmod(path, mode & 0o7777)

    @_guard
    def chown(self, path, uid, gid):
        d = dict(zip(STAT_FIELDS, self.fs.stat(path)))
        if uid not in (-1, d["st_uid"]) or gid not in (-1, d["st_gid"]):
            raise mfusepy.FuseOSError(errno.EPERM)

    @_guard
    def utimens(self, path, times=None):
        # libfuse3 sends UTIME_NOW/UTIME_OMIT as tv_nsec with tv_sec 0, so with use_ns they
        # arrive as exactly those numbers
        now = time.time_ns()
        a, m = (UTIME_NOW, UTIME_NOW) if times is None else times
        if UTIME_OMIT in (a, m):
            cur = dict(zip(STAT_FIELDS, self.fs.stat(path)))
            a = cur["st_atime_ns"] if a == UTIME_OMIT else a
            m = cur["st_mtime_ns"] if m == UTIME_OMIT else m
        a = now if a == UTIME_NOW else a
        m = now if m == UTIME_NOW else m
        self.fs.utimens(path, int(a), int(m))

    @_guard
    def truncate(self, path, length, fh=None):
        self._ra.clear()
        if fh is not None and fh in self._fds:
            try:
                return self.fs.ftruncate(self._fds[fh], length)
            except OSError as e:
                # a handle opened read-only cannot truncate; the path can (the kernel checked access)
                if path is None or e.errno not in (errno.EINVAL, errno.EBADF):
                    raise
        self.fs.truncate(path, length)

    @_guard
    def statfs(self, path):
        return dict(zip(STATFS_FIELDS, self.fs.statfs()))

    # --- open files --------------------------------------------------------------------

    @_guard
    def open(self, path, flags):
        return self._new_fh(self.fs.open(path, flags & ~os.O_CREAT, 0))

    @_guard
    def create(self, path, mode, flags=os.O_WRONLY):
        return self._new_fh(self.fs.open(path, flags | os.O_CREAT, mode & 0o7777))

    @_guard
    def read(self, path, size, offset, fh):
        fd = self._fd(fh)
        win = self._ra.get(fh)
        if win is not None:
            start, data, eof = win
            end = start + len(data)
            if start <= offset and (offset + size <= end or eof):    # (past the end: EOF)
                self._next[fh] = min(offset + size, end)
                return data[offset - start:offset - start + size]
        # sequential (from the start, or where the last read ended): read ahead
        ahead = self._next.get(fh, 0) == offset and size < READAHEAD
        want = READAHEAD if ahead else size
        out = []
        while want > 0:
            n = min(want, MAX_IO)
            vec, self._vec = self._buf(), None   # moved into the fs: not ours until it returns
            got, self._vec = self.fs.pread(fd, vec, n, offset)
            if ahead:
                data = self._vec.np[:got].tobytes()
                self._ra[fh] = (offset, data, got < n)
                self._next[fh] = offset + min(size, got)
                return data[:size]
            if not out and (got == want or got < n):
                self._next[fh] = offset + got
                # answered by one call: lend the vector itself to libfuse's copy into the
                # kernel's buffer (mfusepy memmoves from what read returns, at once, before
                # the next request can reuse the vector), saving a copy of the data
                return (ctypes.c_char * got).from_buffer(self._vec.np) if got else b""
            out.append(self._vec.np[:got].tobytes())
            if got < n:
                break
            want -= got
            offset += got
        self._next[fh] = offset + (len(out[-1]) if out else 0)
        return b"".join(out)

    @_guard
    def write(self, path, data, offset, fh):
        fd = self._fd(fh)
        self._ra.clear()              # what was read ahead may be what this changes
        done = 0
        view = memoryview(data)
        while done < len(view):
            n = min(len(view) - done, MAX_IO)
            vec = self._buf()
            vec.np[:n] = np.frombuffer(view[done:done + n], dtype=np.uint8)
            w = self.fs.pwrite(fd, vec, n, offset + done)   # borrowed: still ours after
            done += w
            if w < n:
                break
        return done

    @_guard
    def flush(self, path, fh):
        return 0

    @_guard
    def release(self, path, fh):
        self._ra.pop(fh, None)
        self._next.pop(fh, None)
        fd = self._fds.pop(fh, None)
        if fd is not None:
            self.fs.close(fd)

    @_guard
    def fsync(self, path, datasync, fh):
        self.fs.fsync(self._fd(fh))

    def destroy(self, path):
        # unmounting: close what the kernel left open and commit, so the image is clean
        for fh in list(self._fds):
            try:
                self.release(None, fh)
            except OSError:
                pass
        try:
            self.fs.sync()
        except Exception as e:  # the fs domain may be gone; the unmount goes on
            log.error("rv6 mount: sync at unmount failed: %r", e)


class _FUSE(mfusepy.FUSE):
    """mfusepy's FUSE, passing rename's flags on (it drops them: `mv -n`, renameat2's
    RENAME_NOREPLACE, would silently replace)."""

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename(old.decode(self.encoding, self.errors),
                                      new.decode(self.encoding, self.errors), flags)


def serve(fs, heap, mountpoint: str, *, fsname: str = "rv6") -> None:
    """Mount `fs` on `mountpoint` and serve until it is unmounted or SIGTERM/SIGINT/SIGHUP.

    Foreground and one thread, always. Why: a client domain's control channel and heap
    allocator belong to one thread, and libfuse's own daemonising forks, which a process
    attached to an instance must not do; `redleaf mount` detaches by starting this process
    in a new session instead. hard_remove: an unlinked open file really is unlinked (no
    .fuse_hidden files left in directories), its handle still names it. use_ino: the fs's
    inode numbers, so du, tar and find see hard links. Timeouts 0: the kernel asks us
    rather than trusting cached attributes, because other clients of the fs domain (Rv6's
    own programs) change the tree behind our back, and a cached st_nlink is stale right
    after `ln` (kernel 6.x keeps the link's old count for attr_timeout)."""
    _FUSE(Rv6Fuse(fs, heap), mountpoint, foreground=True, nothreads=True, fsname=fsname,
          subtype="rv6", default_permissions=True, hard_remove=True, use_ino=True,
          attr_timeout=0, entry_timeout=0, negative_timeout=0)


def main(argv: list[str] | None = None) -> int:
    from redleaf.domains import attach
    from redleaf.domains.errors import RedleafError

    from .fs_interface import FileSystem

    p = argparse.ArgumentParser(prog="python -m redleaf.rv6.fuse_mount",
                                description="Mount an instance's Rv6 file system on DIR through FUSE.")
    p.add_argument("dir")
    p.add_argument("--name", default="default", help="the redleaf instance")
    p.add_argument("--export", default="rv6fs", help="the FileSystem the instance exports")
    p.add_argument("--foreground", action="store_true",
                   help="accepted for symmetry with `redleaf mount`; this process always serves in the foreground")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    mnt = os.path.abspath(a.dir)
    if not os.path.isdir(mnt):
        print(f"redleaf mount: {mnt} is not a directory", file=sys.stderr)
        return 2
    try:
        with attach(a.name) as d:
            fs = d.lookup(a.export, FileSystem)
            fs.statfs()  # fail here, with the fs's own error, rather than after mounting
            serve(fs, d.heap, mnt, fsname=f"rv6:{a.name}")
    except (RedleafError, OSError, RuntimeError) as e:
        # one line: `redleaf mount` shows the last line of this process's output
        print(f"redleaf mount: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
