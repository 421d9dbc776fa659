"""The top of the file system: `FileSystem`, the path- and handle-based API the
FileSystem domain and a FUSE mount wrap. It ties the layers below and calls only them.

Constructing a FileSystem mounts a device: the superblock is checked (NotRv6Error for an
image that is not ours or of another version, CorruptionError for ours but damaged), the
log is replayed (`recovered` says how many blocks), free space is counted, and orphans
(inodes a crash left allocated with no link) are freed, as ext4 does with its orphan list.

Every call is pure logic over the device: times come from the `clock` passed in (ns since
the epoch), nothing sleeps or spawns. Each call that changes the tree is one log operation
(a large write or truncate several, see file.py), so a crash leaves the state of some
commit; `fsync`/`sync`/`unmount` commit and flush. Errors are FsError with a POSIX errno.

Paths are absolute, or relative to `cwd` (an inode number from `lookup`). Descriptors are
small ints. Semantics follow POSIX where users can tell: rename is atomic (one
operation), replaces files and empty directories, refuses a directory into its own subtree
(EINVAL); an unlinked open file lives until its last close; mtime/ctime change on write and
truncate, ctime on link/unlink/rename/chmod, and atime relatime-style on read (when older
than mtime/ctime or a day old). Device files (mknod) are character devices whose I/O
belongs to their driver (read/write here: ENODEV); FIFOs and sockets are not stored.
"""

from __future__ import annotations

import errno
import os
import stat as st
from dataclasses import dataclass
from typing import Callable, Iterable

from .bcache import BufCache
from .dir import Dirs, check_name
from .disk import BlockDevice
from .errors import CorruptionError, FsError
from .file import FdTable, Files, OpenFile, access
from .format import BSIZE, NAME_MAX, ROOTINO, T_DEV, T_DIR, T_FILE, Superblock
from .inode import Inode, Inodes
from .log import Log
from .path import Paths

NLINK_MAX = 0xFFFF
RELATIME_NS = 24 * 3600 * 10**9
_S_IFMT = {T_FILE: st.S_IFREG, T_DIR: st.S_IFDIR, T_DEV: st.S_IFCHR}


@dataclass(frozen=True)
class Stat:
    st_ino: int
    st_mode: int            # type bits | permission bits, as os.stat_result
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_blocks: int          # 512-byte units, as du expects
    st_blksize: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_rdev: int            # os.makedev(major, minor) for a device, else 0

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.st_mode)


@dataclass(frozen=True)
class StatFs:
    f_bsize: int
    f_frsize: int
    f_blocks: int           # data blocks
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_favail: int
    f_namemax: int


@dataclass(frozen=True)
class DirEntry:
    name: str
    ino: int
    type: int               # S_IFDIR, S_IFREG or S_IFCHR (a d_type for FUSE's readdir)


def _name(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class FileSystem:
    def __init__(self, dev: BlockDevice, clock: Callable[[], int], *, cache_blocks: int | None = None,
                 group_commit: bool = True, max_open: int = 1024):
        self.dev = dev
        self.clock = clock
        if dev.nblocks < 2:
            raise CorruptionError(f"the device has {dev.nblocks} blocks; no superblock fits")
        self.sb = sb = Superblock.unpack(dev.read_block(1), dev.nblocks)
        self.cache = BufCache(dev, cache_blocks or sb.logsize + 512)
        if self.cache.capacity < sb.logsize + 16:
            raise FsError(errno.EINVAL, f"a cache of {self.cache.capacity} blocks cannot hold a "
                                        f"full transaction ({sb.logsize} blocks) and the blocks in use")
        self.log = Log(dev, self.cache, sb, group_commit)
        self.recovered = self.log.recover()
        self.inodes = Inodes(sb, self.cache, self.log)
        self.dirs = Dirs(self.inodes)
        self.paths = Paths(self.inodes, self.dirs)
        self.files = Files(self.inodes, self.log)
        self.fds = FdTable(max_open)
        scan = self.inodes.scan()
        self.corrupt_inodes = scan.corrupt
        root = self.inodes.iget(ROOTINO)
        if root.d.type != T_DIR:
            raise CorruptionError("inode 1 (the root) is not a directory")
        for inum in scan.orphans:
            self.files.release(self.inodes.iget(inum))
        self.orphans_freed = len(scan.orphans)
        self.mounted = True

    # --- helpers -----------------------------------------------------------------------

    def _live(self) -> None:
        if not self.mounted:
            raise FsError(errno.EIO, "the file system is unmounted")
        self.log.check_alive()

    def _put(self, ip: Inode) -> None:
        """Drop a reference; free the inode if it was the last of an unlinked one."""
        if ip.ref == 0 and ip.d.nlink == 0 and ip.d.type:
            if ip.d.type == T_DIR:
                self.dirs.forget(ip.inum)
            self.files.release(ip)

    def _touch(self, ip: Inode, now: int, m: bool = True) -> None:
        if m:
            ip.d.mtime = now
        ip.d.ctime = now
        self.inodes.iupdate(ip)

    def _create(self, dp: Inode, name: bytes, type_: int, mode: int, now: int,
                major: int = 0, minor: int = 0) -> Inode:
        """Make `name` in `dp` inside the caller's operation; on ENOSPC nothing changes."""
        check_name(name)
        if name in (b".", b"..") or self.dirs.lookup(dp, name):
            raise FsError(errno.EEXIST, f"{_name(name)!r} already exists")
        if type_ == T_DIR and dp.d.nlink >= NLINK_MAX:
            raise FsError(errno.EMLINK, f"directory {dp.inum} has the most subdirectories it may")
        ip = self.inodes.ialloc(type_, mode, now)
        ip.d.major, ip.d.minor = major, minor
        ip.d.nlink = 2 if type_ == T_DIR else 1
        try:
            if type_ == T_DIR:
                self.dirs.init(ip, dp.inum)
            self.dirs.add(dp, name, ip.inum)
        except FsError as e:
            if e.errno != errno.ENOSPC:
                raise
            # undo inside the same operation: the block (if any) and the inode go back
            ip.d.nlink = 0
            self.inodes.shrink_step(ip, 0, 8)
            self.inodes.ifree(ip)
            raise
        self.inodes.iupdate(ip)
        if type_ == T_DIR:
            dp.d.nlink += 1
        self._touch(dp, now)
        return ip

    def _parent(self, path, cwd: int) -> tuple[Inode, bytes | None, bool]:
        return self.paths.nameiparent(path, cwd)

    # --- names -------------------------------------------------------------------------

    def lookup(self, path: str | bytes, *, cwd: int = ROOTINO) -> int:
        """The inode number `path` names (a kernel keeps a process's cwd as one)."""
        self._live()
        return self.paths.namei(path, cwd).inum

    def open(self, path: str | bytes, flags: int = os.O_RDONLY, mode: int = 0o644, *,
             cwd: int = ROOTINO) -> int:
        self._live()
        readable, writable = access(flags)
        if len(self.fds.files) >= self.fds.max_open:
            raise FsError(errno.EMFILE, f"all {self.fds.max_open} file descriptors are open")
        now = self.clock()
        if flags & os.O_CREAT:
            with self.log.op():
                dp, name, slash = self._parent(path, cwd)
                hit = self.dirs.lookup(dp, name) if name not in (None, b".", b"..") else None
                if name in (None, b".", b".."):
                    ip = self.paths.namei(path, cwd)
                    if flags & os.O_EXCL:
                        raise FsError(errno.EEXIST, f"{path!r} already exists")
                elif hit:
                    if flags & os.O_EXCL:
                        raise FsError(errno.EEXIST, f"{path!r} already exists")
                    ip = self.inodes.iget(hit[0])
                    if slash and ip.d.type != T_DIR:
                        raise FsError(errno.ENOTDIR, f"{path!r} ends in '/' but is not a directory")
                else:
                    if slash:
                        raise FsError(errno.EISDIR, f"{path!r}: O_CREAT makes files, not directories")
                    ip = self._create(dp, name, T_FILE, mode, now)
        else:
            ip = self.paths.namei(path, cwd)
        if flags & os.O_DIRECTORY and ip.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"{path!r} is not a directory (O_DIRECTORY)")
        if ip.d.type == T_DIR and writable:
            raise FsError(errno.EISDIR, f"{path!r} is a directory; it opens read-only")
        if flags & os.O_TRUNC and writable and ip.d.type == T_FILE and ip.d.size:
            self.files.truncate(ip, 0, now)
        ip.ref += 1
        return self.fds.alloc(OpenFile(ip, readable, writable, bool(flags & os.O_APPEND)))

    def close(self, fd: int) -> None:
        self._live()
        f = self.fds.pop(fd)
        f.ip.ref -= 1
        self._put(f.ip)

    def mkdir(self, path: str | bytes, mode: int = 0o755, *, cwd: int = ROOTINO) -> None:
        self._live()
        now = self.clock()
        with self.log.op():
            dp, name, _ = self._parent(path, cwd)
            if name is None:
                raise FsError(errno.EEXIST, f"{path!r} already exists")
            self._create(dp, name, T_DIR, mode, now)

    def mknod(self, path: str | bytes, mode: int, major: int = 0, minor: int = 0, *,
              cwd: int = ROOTINO) -> None:
        """A character device (S_IFCHR) or a regular file (S_IFREG or no type bits)."""
        self._live()
        kind = st.S_IFMT(mode)
        if kind in (0, st.S_IFREG):
            type_ = T_FILE
        elif kind == st.S_IFCHR:
            type_ = T_DEV
        else:
            raise FsError(errno.EINVAL, f"mode {mode:#o}: Rv6 stores regular files and "
                                        "character devices only")
        if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
            raise FsError(errno.EINVAL, f"device ({major}, {minor}): each must fit 16 bits")
        now = self.clock()
        with self.log.op():
            dp, name, _ = self._parent(path, cwd)
            if name is None:
                raise FsError(errno.EEXIST, f"{path!r} already exists")
            self._create(dp, name, type_, mode, now, major, minor)

    def link(self, old: str | bytes, new: str | bytes, *, cwd: int = ROOTINO) -> None:
        self._live()
        now = self.clock()
        with self.log.op():
            ip = self.paths.namei(old, cwd)
            if ip.d.type == T_DIR:
                raise FsError(errno.EPERM, f"{old!r} is a directory; directories take no hard links")
            dp, name, _ = self._parent(new, cwd)
            if name is None or name in (b".", b".."):
                raise FsError(errno.EEXIST, f"{new!r} already exists")
            check_name(name)
            if self.dirs.lookup(dp, name):
                raise FsError(errno.EEXIST, f"{new!r} already exists")
            if ip.d.nlink >= NLINK_MAX:
                raise FsError(errno.EMLINK, f"{old!r} has {ip.d.nlink} links, the most it may")
            self.dirs.add(dp, name, ip.inum)
            ip.d.nlink += 1
            self._touch(ip, now, m=False)
            self._touch(dp, now)

    def unlink(self, path: str | bytes, *, cwd: int = ROOTINO) -> None:
        self._live()
        now = self.clock()
        with self.log.op():
            dp, name, slash = self._parent(path, cwd)
            if name is None or name in (b".", b".."):
                raise FsError(errno.EISDIR, f"{path!r} is a directory; use rmdir")
            hit = self.dirs.lookup(dp, name)
            if hit is None:
                raise FsError(errno.ENOENT, f"{path!r} does not exist")
            ip = self.inodes.iget(hit[0])
            if ip.d.type == T_DIR:
                raise FsError(errno.EISDIR, f"{path!r} is a directory; use rmdir")
            if slash:
                raise FsError(errno.ENOTDIR, f"{path!r} ends in '/' but is not a directory")
            if ip.d.nlink == 0:
                raise CorruptionError(f"inode {ip.inum} is named by {path!r} but has no links")
            self.dirs.remove(dp, hit[1])
            ip.d.nlink -= 1
            self._touch(ip, now, m=False)
            self._touch(dp, now)
        self._put(ip)

    def rmdir(self, path: str | bytes, *, cwd: int = ROOTINO) -> None:
        self._live()
        now = self.clock()
        with self.log.op():
            dp, name, _ = self._parent(path, cwd)
            if name is None:
                raise FsError(errno.EBUSY, "the root directory cannot be removed")
            if name == b".":
                raise FsError(errno.EINVAL, f"{path!r}: rmdir of '.' (name the directory instead)")
            if name == b"..":
                raise FsError(errno.ENOTEMPTY, f"{path!r}: '..' is not empty")
            hit = self.dirs.lookup(dp, name)
            if hit is None:
                raise FsError(errno.ENOENT, f"{path!r} does not exist")
            ip = self.inodes.iget(hit[0])
            if ip.d.type != T_DIR:
                raise FsError(errno.ENOTDIR, f"{path!r} is not a directory")
            if ip.inum == ROOTINO:
                raise FsError(errno.EBUSY, "the root directory cannot be removed")
            if not self.dirs.is_empty(ip):
                raise FsError(errno.ENOTEMPTY, f"{path!r} is not empty")
            self.dirs.remove(dp, hit[1])
            ip.d.nlink = 0          # its entry in dp and its own "." are gone
            dp.d.nlink -= 1         # its ".." is gone
            self._touch(ip, now, m=False)
            self._touch(dp, now)
        self._put(ip)

    def _is_ancestor(self, anc: Inode, dp: Inode) -> bool:
        """Is `anc` the directory `dp` or above it? Walk ".." to the root."""
        seen = set()
        ip = dp
        while True:
            if ip.inum == anc.inum:
                return True
            if ip.inum == ROOTINO:
                return False
            if ip.inum in seen:
                raise CorruptionError(f"directory {ip.inum} is its own ancestor")
            seen.add(ip.inum)
            hit = self.dirs.lookup(ip, b"..")
            if hit is None:
                raise CorruptionError(f"directory {ip.inum} has no '..'")
            ip = self.inodes.iget(hit[0])

    def rename(self, old: str | bytes, new: str | bytes, *, cwd: int = ROOTINO) -> None:
        """Atomically: after a crash either `old` or `new` names the file, never neither."""
        self._live()
        now = self.clock()
        victim = None
        with self.log.op():
            sdp, sname, sslash = self._parent(old, cwd)
            ddp, dname, dslash = self._parent(new, cwd)
            for p, n in ((old, sname), (new, dname)):
                if n is None or n in (b".", b".."):
                    raise FsError(errno.EINVAL, f"rename: {p!r} does not end in a name")
            check_name(dname)
            shit = self.dirs.lookup(sdp, sname)
            if shit is None:
                raise FsError(errno.ENOENT, f"{old!r} does not exist")
            ip = self.inodes.iget(shit[0])
            isdir = ip.d.type == T_DIR
            if (sslash or dslash) and not isdir:
                raise FsError(errno.ENOTDIR, f"rename: {old!r} is not a directory")
            if isdir and sdp.inum != ddp.inum and self._is_ancestor(ip, ddp):
                # checked before the target, as Linux does: EINVAL, not ENOTEMPTY
                raise FsError(errno.EINVAL, f"cannot move {old!r} into its own subtree {new!r}")
            dhit = self.dirs.lookup(ddp, dname)
            tip = self.inodes.iget(dhit[0]) if dhit else None
            if tip is not None and tip.inum == ip.inum:
                return          # two names of one file: POSIX says do nothing
            if tip is not None:
                if isdir and tip.d.type != T_DIR:
                    raise FsError(errno.ENOTDIR, f"{new!r} is not a directory; {old!r} is")
                if not isdir and tip.d.type == T_DIR:
                    raise FsError(errno.EISDIR, f"{new!r} is a directory; {old!r} is not")
                if tip.d.type == T_DIR and not self.dirs.is_empty(tip):
                    raise FsError(errno.ENOTEMPTY, f"{new!r} is a directory that is not empty")
            moving = isdir and sdp.inum != ddp.inum
            if moving:
                if tip is None and ddp.d.nlink >= NLINK_MAX:
                    raise FsError(errno.EMLINK, f"{new!r}: its directory has the most subdirectories it may")
                dotdot = self.dirs.lookup(ip, b"..")
                if dotdot is None:
                    raise CorruptionError(f"directory {ip.inum} has no '..'")
            # every check is done: from here each change is part of one operation
            if tip is None:
                self.dirs.add(ddp, dname, ip.inum)      # the only step that can fail (ENOSPC)
            else:
                self.dirs.set_inum(ddp, dhit[1], ip.inum)
                if tip.d.type == T_DIR:
                    tip.d.nlink = 0
                    ddp.d.nlink -= 1                    # the victim's ".." is gone
                else:
                    tip.d.nlink -= 1
                self._touch(tip, now, m=False)
                victim = tip
            self.dirs.remove(sdp, shit[1])
            if moving:
                self.dirs.set_inum(ip, dotdot[1], ddp.inum)
                sdp.d.nlink -= 1
                ddp.d.nlink += 1
            self._touch(ip, now, m=False)
            self._touch(sdp, now)
            if ddp.inum != sdp.inum:
                self._touch(ddp, now)
        if victim is not None:
            self._put(victim)

    def readdir(self, path: str | bytes = "/", *, cwd: int = ROOTINO) -> list[DirEntry]:
        """Every entry, "." and ".." included, in directory order."""
        self._live()
        dp = self.paths.namei(path, cwd)
        if dp.d.type != T_DIR:
            raise FsError(errno.ENOTDIR, f"{path!r} is not a directory")
        out = []
        for _, name, inum in list(self.dirs.entries(dp)):
            ip = self.inodes.iget(inum)
            if ip.d.type not in _S_IFMT:
                raise CorruptionError(f"{path!r}: entry {_name(name)!r} names free inode {inum}")
            out.append(DirEntry(_name(name), inum, _S_IFMT[ip.d.type]))
        return out

    # --- attributes --------------------------------------------------------------------

    def _stat(self, ip: Inode) -> Stat:
        d = ip.d
        return Stat(ip.inum, _S_IFMT[d.type] | d.mode, d.nlink, d.uid, d.gid, d.size,
                    d.nblocks * (BSIZE // 512), BSIZE, d.atime, d.mtime, d.ctime,
                    os.makedev(d.major, d.minor) if d.type == T_DEV else 0)

    def stat(self, path: str | bytes, *, cwd: int = ROOTINO) -> Stat:
        self._live()
        return self._stat(self.paths.namei(path, cwd))

    def fstat(self, fd: int) -> Stat:
        self._live()
        return self._stat(self.fds.get(fd).ip)

    def chmod(self, path: str | bytes, mode: int, *, cwd: int = ROOTINO) -> None:
        self._live()
        now = self.clock()
        with self.log.op():
            ip = self.paths.namei(path, cwd)
            ip.d.mode = mode & 0o7777
            self._touch(ip, now, m=False)

    def chown(self, path: str | bytes, uid: int = -1, gid: int = -1, *, cwd: int = ROOTINO) -> None:
        """-1 leaves an id as it is (chown(2))."""
        self._live()
        for v in (uid, gid):
            if not -1 <= v <= 0xFFFFFFFE:
                raise FsError(errno.EINVAL, f"id {v} does not fit 32 bits")
        now = self.clock()
        with self.log.op():
            ip = self.paths.namei(path, cwd)
            if uid != -1:
                ip.d.uid = uid
            if gid != -1:
                ip.d.gid = gid
            self._touch(ip, now, m=False)

    def utimens(self, path: str | bytes, times: tuple[int, int] | None = None, *,
                cwd: int = ROOTINO) -> None:
        """Set (atime_ns, mtime_ns), or both to now when `times` is None (os.utime's ns)."""
        self._live()
        now = self.clock()
        a, m = (now, now) if times is None else times
        with self.log.op():
            ip = self.paths.namei(path, cwd)
            ip.d.atime, ip.d.mtime, ip.d.ctime = int(a), int(m), now
            self.inodes.iupdate(ip)

    def truncate(self, path: str | bytes, size: int, *, cwd: int = ROOTINO) -> None:
        self._live()
        ip = self.paths.namei(path, cwd)
        self.files.truncate(ip, size, self.clock())

    def ftruncate(self, fd: int, size: int) -> None:
        self._live()
        f = self.fds.get(fd)
        if not f.writable:
            raise FsError(errno.EINVAL, f"descriptor {fd} is not open for writing")
        self.files.truncate(f.ip, size, self.clock())

    # --- data --------------------------------------------------------------------------

    def _readable(self, fd: int) -> OpenFile:
        f = self.fds.get(fd)
        if not f.readable:
            raise FsError(errno.EBADF, f"descriptor {fd} is not open for reading")
        return f

    def _writable(self, fd: int) -> OpenFile:
        f = self.fds.get(fd)
        if not f.writable:
            raise FsError(errno.EBADF, f"descriptor {fd} is not open for writing")
        return f

    def _accessed(self, ip: Inode) -> None:
        now = self.clock()
        d = ip.d
        if d.atime <= d.mtime or d.atime <= d.ctime or now - d.atime >= RELATIME_NS:
            with self.log.op():
                d.atime = now
                self.inodes.iupdate(ip)

    def preadinto(self, fd: int, buf, offset: int) -> int:
        self._live()
        f = self._readable(fd)
        n = self.files.readinto(f.ip, offset, memoryview(buf).cast("B"))
        self._accessed(f.ip)
        return n

    def readinto(self, fd: int, buf) -> int:
        self._live()
        f = self._readable(fd)
        n = self.preadinto(fd, buf, f.offset)
        f.offset += n
        return n

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        self._live()
        f = self._readable(fd)
        if n < 0:
            raise FsError(errno.EINVAL, f"negative read size {n}")
        buf = bytearray(max(0, min(n, f.ip.d.size - offset)))
        got = self.preadinto(fd, buf, offset)
        return bytes(buf[:got])

    def read(self, fd: int, n: int) -> bytes:
        self._live()
        f = self._readable(fd)
        data = self.pread(fd, n, f.offset)
        f.offset += len(data)
        return data

    def readv(self, fd: int, buffers: Iterable) -> int:
        """Fill each writable buffer in turn from the offset; the total read."""
        total = 0
        for b in buffers:
            mv = memoryview(b).cast("B")
            n = self.readinto(fd, mv)
            total += n
            if n < len(mv):
                break
        return total

    def pwrite(self, fd: int, data, offset: int) -> int:
        self._live()
        f = self._writable(fd)
        return self.files.write(f.ip, offset, data, self.clock())

    def write(self, fd: int, data) -> int:
        self._live()
        f = self._writable(fd)
        if f.append:
            f.offset = f.ip.d.size
        n = self.files.write(f.ip, f.offset, data, self.clock())
        f.offset += n
        return n

    def writev(self, fd: int, buffers: Iterable) -> int:
        total = 0
        for b in buffers:
            mv = memoryview(b).cast("B")
            n = self.write(fd, mv)
            total += n
            if n < len(mv):
                break
        return total

    def seek(self, fd: int, offset: int, whence: int = os.SEEK_SET) -> int:
        self._live()
        f = self.fds.get(fd)
        base = {os.SEEK_SET: 0, os.SEEK_CUR: f.offset, os.SEEK_END: f.ip.d.size}.get(whence)
        if base is None:
            raise FsError(errno.EINVAL, f"whence {whence} is not SEEK_SET, SEEK_CUR or SEEK_END")
        if base + offset < 0:
            raise FsError(errno.EINVAL, f"seek to {base + offset}, before the start of the file")
        f.offset = base + offset
        return f.offset

    # --- durability and the whole fs ---------------------------------------------------

    def fsync(self, fd: int) -> None:
        """Commit everything pending (the file, its names, all of it) and flush."""
        self._live()
        self.fds.get(fd)
        self.log.force()

    def sync(self) -> None:
        self._live()
        self.log.force()

    def statfs(self) -> StatFs:
        self._live()
        sb = self.sb
        return StatFs(BSIZE, BSIZE, sb.size - sb.datastart, self.inodes.free_blocks,
                      self.inodes.free_blocks, sb.ninodes - 1, self.inodes.free_inodes,
                      self.inodes.free_inodes, NAME_MAX)

    def unmount(self) -> None:
        """Close every descriptor (freeing unlinked files), commit and flush."""
        if not self.mounted:
            return
        self.log.check_alive()
        for fd in sorted(self.fds.files):
            self.close(fd)
        self.log.force()
        self.cache.clear()
        self.dirs.clear()
        self.mounted = False

    def __enter__(self) -> "FileSystem":
        return self

    def __exit__(self, *exc) -> None:
        if self.mounted and not self.log.failed:
            self.unmount()
