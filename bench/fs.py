"""`redleaf bench fs`: RedLeaf's benchfs on Rv6's file system, with peers in the same run.

Cases:
  seqread-{4k,64k,1m}   read one file from start to end in buffers of that size, again and
                        again for `--seconds` (a pass re-opens the file, so a FUSE pass goes
                        through the daemon, not the kernel's page cache of the last pass)
  seqwrite-{4k,64k,1m}  overwrite the same file from start to end in buffers of that size
  create / stat / unlink  `--files` files of 4 KiB in one directory: create+write+close
                        each, then stat each, then unlink each (operations per second)

Systems, all in the same run:
  redleaf        a client domain (this process, attached) -> FileSystem proxy -> the rv6fs
                 domain -> the NVMe shadow -> the NVMe driver -> the emulated controller
  redleaf-fuse   Linux tools' path: os.read/os.write on the `redleaf mount` of that rv6fs
  host-os        the same loop with os.read/os.write on a file of the host's file system
  python-fuse    the same loop on a minimal in-memory FUSE fs in pure Python
                 (bench/pyfuse_peer.py, mounted with the options `redleaf mount` uses)

Like the NVMe benchmark's, the comparison is the cost of the path, not of a disk: the file
fits the host's page cache and rv6fs's block cache alike (the fs domain's `cache_mb`), and
the emulated device's image sits in the page cache too. Each read pass checks its bytes
against the file's pattern where it landed, so a fast wrong answer cannot pass for a
fast one.

Ratio rows: redleaf / host-os and redleaf-fuse / python-fuse for each case.  Targets
(issue #15): seqread-1m through FileSystem >= 25% of host-os; through FUSE >= python-fuse.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from redleaf.bench import row

B = "fs"
SIZES = {"4k": 4 << 10, "64k": 64 << 10, "1m": 1 << 20}
FS_DOMAIN = """
[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
restart = "permanent"
uses = ["nvme0"]
config = {{ bdev = "nvme0", mkfs_if_blank = true, cache_mb = {cache_mb} }}
"""


def pattern(size: int) -> bytes:
    return np.random.default_rng(15).integers(0, 256, size, dtype=np.uint8).tobytes()


# --------------------------------------------------------------------------- loops
# Every system checks every chunk it reads where it landed (no copy): the same work on
# each side, and a fast wrong answer cannot pass for a fast one.
def _check_chunk(got: np.ndarray, expect: np.ndarray, off: int, where: str) -> None:
    if not np.array_equal(got, expect[off:off + len(got)]):
        raise AssertionError(f"{where}: a read at offset {off} returned wrong data")


def _check_end(off: int, expect: np.ndarray, where: str) -> int:
    if off != len(expect):
        raise AssertionError(f"{where}: a read pass ended at {off}, not at the file's {len(expect)} bytes")
    return off


class PosixTarget:
    """os.* on a directory: the host's file system or a FUSE mount."""

    def __init__(self, root: str):
        self.root = root

    def put(self, name: str, data: bytes) -> None:
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(data)

    def read_pass(self, name: str, bs: int, expect: np.ndarray) -> int:
        fd = os.open(os.path.join(self.root, name), os.O_RDONLY)
        buf = bytearray(bs)
        view = np.frombuffer(buf, np.uint8)
        off = 0
        try:
            while n := os.readv(fd, [buf]):
                _check_chunk(view[:n], expect, off, self.root)
                off += n
        finally:
            os.close(fd)
        return _check_end(off, expect, self.root)

    def write_pass(self, name: str, bs: int, data: bytes) -> int:
        fd = os.open(os.path.join(self.root, name), os.O_WRONLY)
        try:
            view = memoryview(data)
            for off in range(0, len(data), bs):
                os.write(fd, view[off:off + bs])
        finally:
            os.close(fd)
        return len(data)

    def create(self, i: int, block: bytes) -> None:
        fd = os.open(os.path.join(self.root, "m", f"f{i}"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.write(fd, block)
        os.close(fd)

    def stat(self, i: int) -> None:
        os.stat(os.path.join(self.root, "m", f"f{i}"))

    def unlink(self, i: int) -> None:
        os.unlink(os.path.join(self.root, "m", f"f{i}"))

    def mkdir(self) -> None:
        os.mkdir(os.path.join(self.root, "m"))

    def rmdir(self) -> None:
        os.rmdir(os.path.join(self.root, "m"))


class Rv6Target:
    """The FileSystem interface from an attached client: what a domain of ours would do.
    Data moves as RRefs: one byte vector of the buffer size, moved in and back per read,
    borrowed per write."""

    def __init__(self, client):
        from redleaf.rv6.fs_interface import FileSystem

        self.c = client
        self.fs = client.lookup("rv6fs", FileSystem)
        self.vecs: dict[int, object] = {}

    def _vec(self, n: int):
        v = self.vecs.get(n)
        if v is None:
            v = self.vecs[n] = self.c.heap.alloc_vec(np.uint8, n)
        return v

    def put(self, name: str, data: bytes) -> None:
        fd = self.fs.open("/" + name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:
            self._write_all(fd, data, 1 << 20)
            self.fs.fsync(fd)
        finally:
            self.fs.close(fd)

    def _write_all(self, fd: int, data: bytes, bs: int) -> None:
        v = self._vec(bs)
        src = np.frombuffer(data, np.uint8)
        for off in range(0, len(data), bs):
            chunk = src[off:off + bs]
            v.np[:len(chunk)] = chunk
            if self.fs.write(fd, v, len(chunk)) != len(chunk):
                raise AssertionError("a short write on rv6fs")

    def read_pass(self, name: str, bs: int, expect: np.ndarray) -> int:
        fd = self.fs.open("/" + name, os.O_RDONLY, 0)
        off = 0
        v, self.vecs[bs] = self._vec(bs), None    # moved into the fs and back each call
        try:
            while True:
                n, v = self.fs.read(fd, v, bs)
                if n == 0:
                    break
                _check_chunk(v.np[:n], expect, off, "rv6fs")
                off += n
        finally:
            self.vecs[bs] = v
            self.fs.close(fd)
        return _check_end(off, expect, "rv6fs")

    def write_pass(self, name: str, bs: int, data: bytes) -> int:
        fd = self.fs.open("/" + name, os.O_WRONLY, 0)
        try:
            self._write_all(fd, data, bs)
        finally:
            self.fs.close(fd)
        return len(data)

    def create(self, i: int, block: bytes) -> None:
        fd = self.fs.open(f"/m/f{i}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:
            v = self._vec(len(block))
            v.np[:] = np.frombuffer(block, np.uint8)
            self.fs.write(fd, v, len(block))
        finally:
            self.fs.close(fd)

    def stat(self, i: int) -> None:
        self.fs.stat(f"/m/f{i}")

    def unlink(self, i: int) -> None:
        self.fs.unlink(f"/m/f{i}")

    def mkdir(self) -> None:
        self.fs.mkdir("/m", 0o755)

    def rmdir(self) -> None:
        self.fs.rmdir("/m")


def _timed(fn, seconds: float) -> tuple[int, float]:
    """Repeat fn() (it returns bytes moved) for at least `seconds` and one call."""
    total, t0 = 0, time.perf_counter()
    while True:
        total += fn()
        el = time.perf_counter() - t0
        if el >= seconds:
            return total, el


# --------------------------------------------------------------------------- mounts
def _wait_mounted(path: str, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(path):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before mounting {path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not mount {path} in {timeout:g}s")
        time.sleep(0.02)


def _unmount(path: str, proc: subprocess.Popen | None) -> None:
    if os.path.ismount(path):
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def mounted(argv: list[str], path: str, what: str):
    os.makedirs(path, exist_ok=True)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_mounted(path, proc, what)
        yield path
    finally:
        _unmount(path, proc)


def fuse_available() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (make sysdeps installs fuse3)"
    return None


# --------------------------------------------------------------------------- run
def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench fs")
    ap.add_argument("--quick", action="store_true", help="a smoke test: small file, few files, short cases")
    ap.add_argument("--seconds", type=float, default=2.0, help="duration of each data case and system")
    ap.add_argument("--file-mb", type=int, default=16, help="size of the file the data cases read and write")
    ap.add_argument("--files", type=int, default=10000, help="files in the create/stat/unlink cases")
    ap.add_argument("--no-fuse", action="store_true", help="leave out the two FUSE systems")
    a = ap.parse_args(argv)
    seconds = 0.3 if a.quick else a.seconds
    file_mb = 2 if a.quick else a.file_mb
    nfiles = 200 if a.quick else a.files
    why = None if a.no_fuse else fuse_available()
    use_fuse = not a.no_fuse and why is None

    from redleaf.drivers.nvme.manifests import nvme_manifest
    from redleaf.supervisor.instance import Instance

    data = pattern(file_mb << 20)
    expect = np.frombuffer(data, np.uint8)
    block = pattern(4096)
    image_mb = max(64, 4 * file_mb + nfiles * 5 // 1024 + 32)
    cache_mb = 2 * file_mb + 16
    rows: list[dict] = []
    rate: dict[tuple[str, str], float] = {}

    def add(case, system, value, unit):
        rate[(case, system)] = value
        rows.append(row(B, case, system, "rate", value, unit))

    tmp = tempfile.mkdtemp(prefix="redleaf-bench-fs-")
    try:
        with contextlib.ExitStack() as stack:
            manifest = nvme_manifest(os.path.join(tmp, "nvme0.img"), f"{image_mb}MiB", shadow=True,
                                     heap="256MiB") + FS_DOMAIN.format(cache_mb=cache_mb)
            inst = stack.enter_context(Instance(manifest, cwd=tmp))
            client = stack.enter_context(inst.attach())
            host_dir = os.path.join(tmp, "host")
            os.mkdir(host_dir)
            systems = {"redleaf": Rv6Target(client), "host-os": PosixTarget(host_dir)}
            if use_fuse:
                mnt = stack.enter_context(mounted(
                    [sys.executable, "-m", "redleaf.rv6.fuse_mount", os.path.join(tmp, "rv6"), "--name", inst.name],
                    os.path.join(tmp, "rv6"), "the redleaf mount"))
                peer = stack.enter_context(mounted(
                    [sys.executable, "-m", "redleaf.bench.pyfuse_peer", os.path.join(tmp, "peer")],
                    os.path.join(tmp, "peer"), "the python-fuse peer"))
                systems["redleaf-fuse"] = PosixTarget(mnt)
                systems["python-fuse"] = PosixTarget(peer)
            for name, t in systems.items():
                if name != "redleaf-fuse":          # the same file as redleaf's
                    t.put("big", data)
            for label, bs in SIZES.items():
                for kind in ("seqread", "seqwrite"):
                    case = f"{kind}-{label}"
                    for name, t in systems.items():
                        if kind == "seqread":
                            moved, el = _timed(lambda: t.read_pass("big", bs, expect), seconds)
                        else:
                            moved, el = _timed(lambda: t.write_pass("big", bs, data), seconds)
                        add(case, name, moved / el / 1e6, "MB/s")
            for name, t in systems.items():
                t.mkdir()
                for op in ("create", "stat", "unlink"):
                    fn = {"create": lambda i: t.create(i, block), "stat": t.stat, "unlink": t.unlink}[op]
                    t0 = time.perf_counter()
                    for i in range(nfiles):
                        fn(i)
                    add(f"{op}-4k-x{nfiles}" if op == "create" else f"{op}-x{nfiles}", name,
                        nfiles / (time.perf_counter() - t0), "ops/s")
                t.rmdir()
            client.heap  # the client stays attached until the mounts are down (ExitStack order)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for (case, system), v in list(rate.items()):
        peer = {"redleaf": "host-os", "redleaf-fuse": "python-fuse"}.get(system)
        if peer and (case, peer) in rate:
            rows.append(row(B, case, f"{system}/{peer}", "ratio", v / rate[(case, peer)], "x"))
    if why and not a.no_fuse:
        print(f"bench fs: FUSE systems left out: {why}", file=sys.stderr)
    return rows
