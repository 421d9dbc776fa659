"""The FUSE mount (rv6/fuse_mount.py) against the local stand-in fs (tests/rv6/fuse_fakes.py).

Unit tests drive `Rv6Fuse` in-process (buffer reuse, one interface call per MAX_IO, errno
mapping). Mount tests start a mount process over the stand-in and run Linux tools on it:
cp -r / diff -r, tar, git, dd + md5sum, mv over a file, ln, rm -r, find, du, df; and a
mount process killed with SIGKILL is cleared by `redleaf umount`. Every mount is
unmounted (lazily if need be) and its process killed in a finally, whatever happens.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from redleaf.rv6.fs.errors import FsError
from redleaf.rv6.fs_interface import MAX_IO

from .fuse_fakes import StandInFs, StandInHeap

ROOT = Path(__file__).resolve().parents[2]


def _mounted(mnt: Path) -> bool:
    """In the mount table (a dead FUSE mount is there though lstat fails, so ismount is False)."""
    target = str(mnt)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (run `make sysdeps` as root)"
    return None


def _cleanup(mnt: Path, proc: subprocess.Popen | None) -> None:
    if _mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait()


def _start(mnt: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.rv6.fuse_fakes", str(mnt)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # ready is observable: the mount appears, or the process ends with its reason
        while not os.path.ismount(mnt):
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")
                if "fuse: device not found" in out or "Operation not permitted" in out:
                    pytest.skip(f"the kernel refuses FUSE mounts here: {out.strip().splitlines()[-1]}")
                raise AssertionError(f"the mount process exited {proc.returncode}:\n{out}")
            try:
                proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        _cleanup(mnt, proc)
        raise
    return proc


@pytest.fixture
def mount(tmp_path):
    why = _fuse_missing()
    if why:
        pytest.skip(why)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = None
    try:
        proc = _start(mnt)
        yield mnt
    finally:
        _cleanup(mnt, proc)


def sh(cmd: str, cwd, **kw) -> str:
    r = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd!r} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


# --- in-process: the operations over the stand-in ------------------------------------------

@pytest.fixture
def ops():
    from redleaf.rv6.fuse_mount import Rv6Fuse

    heap = StandInHeap()
    return Rv6Fuse(StandInFs(nblocks=4096, inodes=256), heap), heap


def test_sequential_reads_are_answered_from_a_read_ahead_window_that_writes_drop(ops):
    """128 KiB requests of a sequential reader cost one fs call per READAHEAD bytes; the
    bytes are the file's, the end is EOF, a jump elsewhere reads what it asks, and a
    write through the mount (any handle) drops the window so the reader sees it."""
    from redleaf.rv6.fuse_mount import READAHEAD

    o, _heap = ops
    data = os.urandom(3 * READAHEAD + 5000)
    fh = o.create("/f", 0o644, os.O_WRONLY)
    assert o.write("/f", data, 0, fh) == len(data)
    o.release("/f", fh)
    rfh = o.open("/f", os.O_RDONLY)
    before = o.fs.calls.get("pread", 0)
    req = 128 << 10
    got = b"".join(bytes(o.read("/f", req, off, rfh)) for off in range(0, len(data) + req, req))
    assert got == data
    assert o.fs.calls["pread"] - before == 4           # 3 full windows and the short last one
    # a jump is read as asked (no window), and the next sequential read ahead again
    assert bytes(o.read("/f", 10, 12345, rfh)) == data[12345:12355]
    assert bytes(o.read("/f", 100, 12355, rfh)) == data[12355:12455]
    wfh = o.open("/f", os.O_WRONLY)
    assert o.write("/f", b"NEW!", 12455, wfh) == 4     # inside the window just read ahead
    assert bytes(o.read("/f", 8, 12455, rfh)) == b"NEW!" + data[12459:12463]
    o.release("/f", wfh)
    o.release("/f", rfh)


def test_large_io_is_one_call_per_max_io_and_reuses_one_buffer(ops):
    o, heap = ops
    data = os.urandom(3 * MAX_IO + 123)
    fh = o.create("/f", 0o644, os.O_WRONLY)
    assert o.write("/f", data, 0, fh) == len(data)
    o.release("/f", fh)
    fh = o.open("/f", os.O_RDONLY)
    assert bytes(o.read("/f", len(data) + 10, 0, fh)) == data
    assert bytes(o.read("/f", 100, MAX_IO - 50, fh)) == data[MAX_IO - 50:MAX_IO + 50]
    o.release("/f", fh)
    assert o.fs.calls["pwrite"] == 4 and o.fs.calls["pread"] == 5
    assert heap.allocs == 1 and o.vec_allocs == 1


def test_a_failed_read_gives_the_moved_buffer_up_and_the_next_allocates(ops):
    o, heap = ops
    o.mkdir("/d", 0o755)
    fh = o.open("/d", os.O_RDONLY)       # a directory: the fs refuses reads of it
    with pytest.raises(OSError) as ei:
        o.read("/d", 10, 0, fh)
    assert ei.value.errno == errno.EISDIR
    o.release("/d", fh)
    fh = o.create("/f", 0o644, os.O_RDWR)
    o.write("/f", b"abc", 0, fh)
    assert bytes(o.read("/f", 10, 0, fh)) == b"abc"
    assert heap.allocs == 2


def test_fs_errors_reach_the_kernel_as_their_errno_and_others_as_eio(ops):
    o, _ = ops
    o.mkdir("/d", 0o755)
    o.release("/d/f", o.create("/d/f", 0o644, os.O_WRONLY))
    cases = [(lambda: o.getattr("/nope"), errno.ENOENT), (lambda: o.mkdir("/d", 0o755), errno.EEXIST),
             (lambda: o.rmdir("/d"), errno.ENOTEMPTY), (lambda: o.unlink("/d"), errno.EISDIR),
             (lambda: o.mkdir("/" + "n" * 200, 0o755), errno.ENAMETOOLONG),
             (lambda: o.rename("/d/f", "/d", 1), errno.EEXIST),       # RENAME_NOREPLACE
             (lambda: o.read("/x", 1, 0, 999), errno.EBADF)]
    for fn, want in cases:
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == want
    assert o.chown("/d", 0, 0) is None          # to the current ids: POSIX's no-op
    with pytest.raises(OSError) as ei:
        o.chown("/d", 1234, -1)
    assert ei.value.errno == errno.EPERM

    def crashed(*a):
        raise RuntimeError("the fs domain died")
    o.fs.stat = crashed
    with pytest.raises(OSError) as ei:
        o.getattr("/d")
    assert ei.value.errno == errno.EIO
    assert isinstance(FsError(errno.ENOENT, "x"), OSError)


def test_utimens_honours_now_and_omit(ops):
    from redleaf.rv6.fuse_mount import UTIME_NOW, UTIME_OMIT

    o, _ = ops
    o.release("/f", o.create("/f", 0o644, os.O_WRONLY))
    o.utimens("/f", (5 * 10**9, 7 * 10**9))
    o.utimens("/f", (UTIME_OMIT, 9 * 10**9))
    a = o.getattr("/f")
    assert (a["st_atime"], a["st_mtime"]) == (5 * 10**9, 9 * 10**9)
    o.utimens("/f", (UTIME_NOW, UTIME_OMIT))
    a = o.getattr("/f")
    assert a["st_atime"] > 9 * 10**9 and a["st_mtime"] == 9 * 10**9


# --- mounted: Linux tools on the mount --------------------------------------------------

def test_source_tree_copies_in_and_out_unchanged(mount, tmp_path):
    sh(f"cp -r {ROOT / 'domains'} {ROOT / 'rv6'} .", mount)
    sh(f"diff -r {ROOT / 'domains'} domains && diff -r {ROOT / 'rv6'} rv6", mount)
    out = tmp_path / "out"
    sh(f"cp -r {mount / 'rv6'} {out} && diff -r {ROOT / 'rv6'} {out}", tmp_path)
    names = set(sh("find . -name '*.py'", mount).split())
    assert "./rv6/fs/fs.py" in names and "./domains/proxy.py" in names
    assert "fs.py" in sh("ls -l rv6/fs", mount)
    assert int(sh("du -sk rv6", mount).split()[0]) > 0
    sh("rm -r rv6", mount)
    assert sorted(os.listdir(mount)) == ["domains"]


def test_tar_round_trip(mount, tmp_path):
    sh(f"cp -r {ROOT / 'domains'} src && tar cf {tmp_path / 'a.tar'} src", mount)
    sh(f"mkdir x && tar xf {tmp_path / 'a.tar'} -C x && diff -r src x/src", mount)
    sh("tar cf in.tar src && mkdir y && tar xf in.tar -C y && diff -r src y/src", mount)


def test_git_init_commit_log(mount):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e", HOME=str(mount))
    sh(f"git init -q repo && cp -r {ROOT / 'domains'} repo/ && cd repo && git add -A && "
       "git commit -qm first && echo change >> domains/units.py && git commit -qam second", mount, env=env)
    log = sh("git log --format=%s", mount / "repo", env=env).split()
    assert log == ["second", "first"]
    assert sh("git status --porcelain", mount / "repo", env=env) == ""
    sh("git fsck --no-progress", mount / "repo", env=env)


def test_dd_16_mib_and_md5sum(mount, tmp_path):
    src = tmp_path / "big"
    data = os.urandom(16 << 20)
    src.write_bytes(data)
    sh(f"dd if={src} of=big bs=1M status=none && dd if=big of={tmp_path / 'back'} bs=4M status=none", mount)
    sums = sh(f"md5sum {src} big {tmp_path / 'back'}", mount).split()[::2]
    assert sums == [hashlib.md5(data).hexdigest()] * 3
    assert os.stat(mount / "big").st_size == 16 << 20


def test_rename_over_an_existing_file_and_editor_save(mount):
    (mount / "a").write_text("new")
    (mount / "b").write_text("old")
    ino_a = os.stat(mount / "a").st_ino
    sh("mv a b", mount)
    assert not (mount / "a").exists() and (mount / "b").read_text() == "new"
    assert os.stat(mount / "b").st_ino == ino_a
    # an editor's save: write a temp file, fsync it, rename it over the original
    with open(mount / ".b.swp", "w") as f:
        f.write("saved")
        f.flush()
        os.fsync(f.fileno())
    os.rename(mount / ".b.swp", mount / "b")
    assert (mount / "b").read_text() == "saved" and sorted(os.listdir(mount)) == ["b"]
    (mount / "c").write_text("c")
    r = subprocess.run(["mv", "-n", "c", "b"], cwd=mount, capture_output=True)
    assert (mount / "b").read_text() == "saved" and (mount / "c").exists(), r


def test_links_unlink_while_open_truncate_chmod(mount):
    (mount / "f").write_text("hello")
    sh("ln f g", mount)
    assert os.stat(mount / "f").st_nlink == 2 and os.stat(mount / "g").st_ino == os.stat(mount / "f").st_ino
    with open(mount / "g", "rb") as f:
        os.unlink(mount / "g")
        os.unlink(mount / "f")
        assert f.read() == b"hello"               # an unlinked open file lives until closed
    assert os.listdir(mount) == []                # no .fuse_hidden leftovers (hard_remove)
    (mount / "t").write_text("0123456789")
    os.truncate(mount / "t", 4)
    os.chmod(mount / "t", 0o600)
    st_ = os.stat(mount / "t")
    assert (mount / "t").read_text() == "0123" and st_.st_mode & 0o777 == 0o600
    os.utime(mount / "t", ns=(10**18, 2 * 10**18))
    assert os.stat(mount / "t").st_mtime_ns == 2 * 10**18
    with pytest.raises(OSError) as ei:
        os.rmdir(mount / "t")
    assert ei.value.errno == errno.ENOTDIR


def test_df_shows_the_statfs_figures(mount):
    want = StandInFs().statfs()     # the mount process's fs, freshly made with the same sizes
    f_bsize, _, f_blocks, f_bfree, _, f_files, f_ffree, _, namemax = want
    v = os.statvfs(mount)
    assert (v.f_blocks, v.f_bfree, v.f_files, v.f_ffree, v.f_namemax) == (f_blocks, f_bfree, f_files, f_ffree, namemax)
    size, avail, itotal, iavail = map(int, sh(f"df -B {f_bsize} --output=size,avail,itotal,iavail .", mount)
                                      .splitlines()[1].split())
    assert (size, avail, itotal, iavail) == (f_blocks, f_bfree, f_files, f_ffree)


def test_a_killed_mount_process_is_cleared_by_umount(tmp_path):
    from redleaf.supervisor.cli import main as cli

    why = _fuse_missing()
    if why:
        pytest.skip(why)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _start(mnt)
    try:
        (mnt / "f").write_text("x")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _mounted(mnt)                      # a dead mount: in the table, not connected
        with pytest.raises(OSError) as ei:
            os.stat(mnt / "f")
        assert ei.value.errno == errno.ENOTCONN
        assert cli(["umount", str(mnt)]) == 0
        assert not _mounted(mnt) and os.listdir(mnt) == []
    finally:
        _cleanup(mnt, proc)


def test_cli_mount_and_umount(tmp_path):
    why = _fuse_missing()
    if why:
        pytest.skip(why)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, REDLEAF_MOUNT_MODULE="tests.rv6.fuse_fakes")
    redleaf = [sys.executable, "-m", "redleaf.supervisor.cli"]
    pid = None
    try:
        r = subprocess.run(redleaf + ["mount", str(mnt)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"mounted default:rv6fs on {mnt} (pid ")
        pid = int(r.stdout.split("(pid ")[1].split(",")[0])
        assert os.path.ismount(mnt)
        (mnt / "hello").write_text("hi")
        assert (mnt / "hello").read_text() == "hi"
        r = subprocess.run(redleaf + ["umount", str(mnt)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "unmounted" in r.stdout, r.stderr
        assert not _mounted(mnt)
        r = subprocess.run(redleaf + ["umount", str(mnt)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "not mounted" in r.stderr
    finally:
        _cleanup(mnt, None)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_cli_mount_reports_a_mount_process_that_fails(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", "no-such-instance",
                        "mount", str(mnt)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "failed" in r.stderr and "no-such-instance" in r.stderr
    assert not _mounted(mnt)
