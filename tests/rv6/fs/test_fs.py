"""The FileSystem API: POSIX semantics users can tell, errors by errno, times."""

import errno
import os
import stat

import pytest

from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs.file import MAX_WRITE_PER_OP
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck_device

from .conftest import Clock, new_disk

RW, C, X, T, A = os.O_RDWR, os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND


def _errno(fn, *a, **k):
    with pytest.raises(FsError) as e:
        fn(*a, **k)
    assert str(e.value)        # the message says what is wrong
    return e.value.errno


def _put(fs, path, data=b""):
    fd = fs.open(path, RW | C | T)
    fs.write(fd, data)
    fs.close(fd)


def _get(fs, path):
    fd = fs.open(path)
    try:
        return fs.read(fd, 1 << 30)
    finally:
        fs.close(fd)


def test_open_flags(fs):
    assert _errno(fs.open, "/f") == errno.ENOENT
    fd = fs.open("/f", RW | C, 0o600)
    assert fs.fstat(fd).st_mode == stat.S_IFREG | 0o600
    assert _errno(fs.open, "/f", RW | C | X) == errno.EEXIST
    fs.write(fd, b"hello world")
    fs.close(fd)
    fd = fs.open("/f", os.O_WRONLY | A)
    fs.seek(fd, 0)
    fs.write(fd, b"!")
    assert _errno(fs.read, fd, 1) == errno.EBADF
    fs.close(fd)
    assert _get(fs, "/f") == b"hello world!"
    fd = fs.open("/f", os.O_RDONLY)
    assert _errno(fs.write, fd, b"x") == errno.EBADF
    fs.close(fd)
    fs.close(fs.open("/f", os.O_WRONLY | T))
    assert fs.stat("/f").st_size == 0
    fs.mkdir("/d")
    assert _errno(fs.open, "/d", RW) == errno.EISDIR
    assert _errno(fs.open, "/f", os.O_DIRECTORY) == errno.ENOTDIR
    assert _errno(fs.open, "/g/", RW | C) == errno.EISDIR
    assert _errno(fs.open, "/f", 3) == errno.EINVAL
    fs.close(fs.open("/d", os.O_RDONLY | os.O_DIRECTORY))


def test_descriptors_are_small_lowest_first_and_bounded(disk, clock):
    fs = FileSystem(disk, clock, max_open=4)
    _put(fs, "/f")
    fds = [fs.open("/f") for _ in range(4)]
    assert fds == [0, 1, 2, 3]
    assert _errno(fs.open, "/f") == errno.EMFILE
    fs.close(1)
    assert fs.open("/f") == 1
    assert _errno(fs.close, 9) == errno.EBADF
    assert _errno(fs.read, -1, 1) == errno.EBADF
    assert _errno(fs.fstat, "0") == errno.EBADF


def test_read_write_seek_pread_pwrite_and_holes(fs):
    fd = fs.open("/f", RW | C)
    assert fs.pwrite(fd, b"end", 10000) == 3
    assert fs.fstat(fd).st_size == 10003
    assert fs.pread(fd, 5, 9998) == b"\0\0end"
    assert fs.pread(fd, 5, 20000) == b""
    assert fs.seek(fd, -3, os.SEEK_END) == 10000
    assert fs.read(fd, 100) == b"end"
    assert fs.seek(fd, 2, os.SEEK_SET) == 2 and fs.seek(fd, 3, os.SEEK_CUR) == 5
    assert _errno(fs.seek, fd, -6, os.SEEK_CUR) == errno.EINVAL
    assert _errno(fs.seek, fd, 0, 7) == errno.EINVAL
    assert _errno(fs.pread, fd, -1, 0) == errno.EINVAL
    buf = bytearray(4)
    fs.seek(fd, 10000)
    assert fs.readinto(fd, buf) == 3 and buf[:3] == b"end"
    fs.close(fd)


def test_vectored_transfers_of_several_mib_in_one_call(clock):
    d = new_disk(nblocks=8192, inodes=64)
    fs = FileSystem(d, clock)
    data = os.urandom(3 << 20)
    fd = fs.open("/big", RW | C)
    commits = fs.log.commits
    assert fs.writev(fd, [memoryview(data)[:1 << 20], memoryview(data)[1 << 20:]]) == len(data)
    # split into log-sized operations, grouped into fewer transactions
    assert fs.log.commits - commits >= len(data) // (fs.sb.logsize * 4096)
    assert fs.pread(fd, len(data), 0) == data
    fs.seek(fd, 0)
    a, b = bytearray(1 << 20), bytearray(2 << 20)
    assert fs.readv(fd, [a, memoryview(b)]) == len(data) and bytes(a + b) == data
    fs.close(fd)
    fs.unmount()
    assert fsck_device(d).clean


def test_write_larger_than_one_op_crossing_block_edges(fs):
    fd = fs.open("/f", RW | C)
    data = bytes(range(256)) * ((3 * MAX_WRITE_PER_OP) // 256 + 7)
    assert fs.pwrite(fd, data, 4095) == len(data)
    assert fs.pread(fd, len(data) + 1, 4095) == data
    fs.close(fd)


def test_enospc_gives_a_short_write_then_the_error(clock):
    d = new_disk(nblocks=400, inodes=32, log_blocks=65)
    fs = FileSystem(d, clock)
    fd = fs.open("/f", RW | C)
    big = b"x" * (400 * 4096)
    n = fs.write(fd, big)
    assert 0 < n < len(big)
    assert fs.statfs().f_bfree == 0
    assert _errno(fs.write, fd, b"more") == errno.ENOSPC
    assert _errno(fs.mkdir, "/d") == errno.ENOSPC     # a directory needs a block
    assert fs.pread(fd, n, 0) == big[:n]
    fs.close(fd)
    fs.unlink("/f")
    fs.mkdir("/d")
    fs.unmount()
    assert fsck_device(d).clean


def test_truncate_shrinks_grows_and_frees(fs):
    free = fs.statfs().f_bfree
    _put(fs, "/f", bytes(range(256)) * 4000)
    fs.truncate("/f", 5000)
    assert _get(fs, "/f") == (bytes(range(256)) * 20)[:5000]
    fs.truncate("/f", 9000)
    assert _get(fs, "/f") == (bytes(range(256)) * 20)[:5000] + bytes(4000)
    fd = fs.open("/f", RW)
    fs.ftruncate(fd, 0)
    fs.close(fd)
    assert fs.statfs().f_bfree == free
    fd = fs.open("/f")
    assert _errno(fs.ftruncate, fd, 0) == errno.EINVAL
    fs.close(fd)
    assert _errno(fs.truncate, "/f", -1) == errno.EINVAL
    fs.mkdir("/d")
    assert _errno(fs.truncate, "/d", 0) == errno.EISDIR


def test_mkdir_rmdir_link_unlink_errors_and_link_counts(fs):
    fs.mkdir("/d")
    assert fs.stat("/").st_nlink == 3 and fs.stat("/d").st_nlink == 2
    assert _errno(fs.mkdir, "/d") == errno.EEXIST
    assert _errno(fs.mkdir, "/") == errno.EEXIST
    assert _errno(fs.mkdir, "/nope/d") == errno.ENOENT
    _put(fs, "/d/f", b"x")
    assert _errno(fs.mkdir, "/d/f/g") == errno.ENOTDIR
    assert _errno(fs.rmdir, "/d") == errno.ENOTEMPTY
    assert _errno(fs.rmdir, "/d/f") == errno.ENOTDIR
    assert _errno(fs.rmdir, "/") == errno.EBUSY
    assert _errno(fs.rmdir, "/d/.") == errno.EINVAL
    assert _errno(fs.rmdir, "/d/..") == errno.ENOTEMPTY
    assert _errno(fs.unlink, "/d") == errno.EISDIR
    assert _errno(fs.unlink, "/d/nope") == errno.ENOENT
    assert _errno(fs.unlink, "/d/f/") == errno.ENOTDIR
    fs.link("/d/f", "/g")
    assert fs.stat("/g").st_nlink == 2 and fs.stat("/g").st_ino == fs.stat("/d/f").st_ino
    assert _errno(fs.link, "/d", "/e") == errno.EPERM
    assert _errno(fs.link, "/d/f", "/g") == errno.EEXIST
    assert _errno(fs.link, "/nope", "/h") == errno.ENOENT
    fs.unlink("/d/f")
    assert fs.stat("/g").st_nlink == 1
    fs.rmdir("/d")
    assert fs.stat("/").st_nlink == 2
    assert _errno(fs.stat, "/d") == errno.ENOENT


def test_unlinked_open_file_lives_until_last_close(fs):
    free = fs.statfs().f_bfree
    _put(fs, "/f", b"y" * 50000)
    fd = fs.open("/f", RW)
    fs.unlink("/f")
    assert _errno(fs.stat, "/f") == errno.ENOENT
    assert fs.read(fd, 10) == b"y" * 10 and fs.fstat(fd).st_nlink == 0
    fs.write(fd, b"z")
    assert fs.statfs().f_bfree < free
    fs.close(fd)
    assert fs.statfs().f_bfree == free


def test_rename_cases(fs):
    _put(fs, "/a", b"A")
    _put(fs, "/b", b"B")
    fs.rename("/a", "/b")                       # over an existing file
    assert _get(fs, "/b") == b"A" and _errno(fs.stat, "/a") == errno.ENOENT
    fs.mkdir("/d1")
    fs.mkdir("/d2")
    fs.mkdir("/d1/sub")
    fs.rename("/b", "/d1/sub/c")                # across directories
    assert _get(fs, "/d1/sub/c") == b"A"
    fs.rename("/d1/sub", "/d2/sub")             # a directory across: .. and link counts
    assert fs.lookup("/d2/sub/..") == fs.lookup("/d2")
    assert fs.stat("/d1").st_nlink == 2 and fs.stat("/d2").st_nlink == 3
    assert _errno(fs.rename, "/d2", "/d2/sub/x") == errno.EINVAL      # into its own subtree
    assert _errno(fs.rename, "/d2", "/d2/sub") == errno.EINVAL
    fs.mkdir("/d1/empty")
    fs.rename("/d2/sub", "/d1/empty")           # over an empty directory
    assert _get(fs, "/d1/empty/c") == b"A"
    assert fs.stat("/d1").st_nlink == 3 and fs.stat("/d2").st_nlink == 2
    assert _errno(fs.rename, "/d2", "/d1") == errno.ENOTEMPTY
    assert _errno(fs.rename, "/d1/empty/c", "/d2") == errno.EISDIR
    assert _errno(fs.rename, "/d2", "/d1/empty/c") == errno.ENOTDIR
    assert _errno(fs.rename, "/nope", "/x") == errno.ENOENT
    assert _errno(fs.rename, "/d1/.", "/x") == errno.EINVAL
    assert _errno(fs.rename, "/", "/x") == errno.EINVAL
    fs.link("/d1/empty/c", "/hard")
    fs.rename("/hard", "/d1/empty/c")           # two names of one file: nothing happens
    assert fs.stat("/hard").st_nlink == 2
    fs.rename("/d2", "/d2")


def test_times_follow_posix(fs, clock):
    fd = fs.open("/f", RW | C)
    t0 = fs.fstat(fd)
    assert t0.st_atime_ns == t0.st_mtime_ns == t0.st_ctime_ns
    dir0 = fs.stat("/")
    assert dir0.st_mtime_ns == t0.st_mtime_ns                  # creating changed the parent
    fs.write(fd, b"abc")
    t1 = fs.fstat(fd)
    assert t1.st_mtime_ns > t0.st_mtime_ns and t1.st_ctime_ns == t1.st_mtime_ns
    assert fs.write(fd, b"") == 0 and fs.fstat(fd).st_mtime_ns == t1.st_mtime_ns
    fs.pread(fd, 1, 0)
    t2 = fs.fstat(fd)
    assert t2.st_atime_ns > t1.st_atime_ns                     # atime older than mtime
    fs.pread(fd, 1, 0)
    assert fs.fstat(fd).st_atime_ns == t2.st_atime_ns          # relatime: not again
    fs.link("/f", "/g")
    t3 = fs.fstat(fd)
    assert t3.st_ctime_ns > t2.st_ctime_ns and t3.st_mtime_ns == t2.st_mtime_ns
    fs.rename("/g", "/h")
    assert fs.fstat(fd).st_ctime_ns > t3.st_ctime_ns
    fs.chmod("/h", 0o4755)
    assert fs.fstat(fd).st_mode == stat.S_IFREG | 0o4755
    fs.utimens("/h", (5, 6))
    t4 = fs.fstat(fd)
    assert (t4.st_atime_ns, t4.st_mtime_ns) == (5, 6) and t4.st_ctime_ns == clock.last
    fs.utimens("/h")
    assert fs.fstat(fd).st_mtime_ns == clock.last
    fs.ftruncate(fd, 1)
    t5 = fs.fstat(fd)
    assert t5.st_mtime_ns == clock.last
    fs.ftruncate(fd, 1)                                        # same size: no change
    assert fs.fstat(fd).st_mtime_ns == t5.st_mtime_ns
    fs.chown("/h", 1000, -1)
    assert (fs.stat("/h").st_uid, fs.stat("/h").st_gid) == (1000, 0)
    fs.close(fd)


def test_mknod_devices(fs):
    fs.mknod("/tty", stat.S_IFCHR | 0o620, 4, 7)
    s = fs.stat("/tty")
    assert stat.S_ISCHR(s.st_mode) and os.major(s.st_rdev) == 4 and os.minor(s.st_rdev) == 7
    fd = fs.open("/tty", RW)
    assert _errno(fs.write, fd, b"x") == errno.ENODEV
    fs.close(fd)
    fs.mknod("/plain", 0o644)
    assert stat.S_ISREG(fs.stat("/plain").st_mode)
    assert _errno(fs.mknod, "/fifo", stat.S_IFIFO | 0o644) == errno.EINVAL
    assert _errno(fs.mknod, "/tty", stat.S_IFCHR) == errno.EEXIST


def test_statfs_counts(fs):
    s = fs.statfs()
    assert s.f_bsize == 4096 and s.f_namemax == 60
    assert s.f_files == fs.sb.ninodes - 1 and s.f_ffree == s.f_files - 1
    _put(fs, "/f", b"x" * 10000)
    fs.mkdir("/d")
    s2 = fs.statfs()
    assert s.f_bfree - s2.f_bfree == 3 + 1 and s.f_ffree - s2.f_ffree == 2


def test_fsync_commits_and_flushes_and_survives_a_remount(disk, clock):
    fs = FileSystem(disk, clock)
    fd = fs.open("/f", RW | C)
    fs.write(fd, b"durable")
    assert fs.log.pending                      # group commit: not yet
    flushes = disk.flushes
    fs.fsync(fd)
    assert fs.log.pending == 0 and disk.flushes > flushes
    # no unmount: a crash now keeps what fsync made durable
    fs2 = FileSystem(type(disk)(disk.nblocks, disk.blocks), clock)
    assert _get(fs2, "/f") == b"durable"


def test_unmount_and_remount_keep_everything_and_refuse_calls_after(disk, clock):
    fs = FileSystem(disk, clock)
    fs.mkdir("/d")
    _put(fs, "/d/f", b"data")
    fd = fs.open("/d/f", RW)
    fs.unlink("/d/f")                          # freed at unmount's close
    fs.unmount()
    assert _errno(fs.stat, "/") == errno.EIO
    fs = FileSystem(disk, clock)
    assert [e.name for e in fs.readdir("/d")] == [".", ".."]
    assert fs.orphans_freed == 0
    fs.unmount()
    assert fsck_device(disk).problems == []
