"""`redleaf bench rv6`: Rv6's processes, with their peers in the same run.

Cases (issue 16):
- getpid: a null system call through Rv6Sys from an attached client; peers: os.getpid
  (host-os) and the runtime's own null call (Echo.null, case null-call) in the same
  instance, so the kernel's share of a system call shows.
- spawn-exit-wait: spawn of a trivial program (`main` returns 0) and its wait, from the
  client; peers: posix_spawn + waitpid of `python3 -c pass` (case spawn-python-pass) and
  of `/bin/true` (case spawn-true) on the host.
- pipe: MiB/s through a pipe between two Rv6 programs (a writer of 1 MiB blocks and a
  reader to EOF, like `cat bigfile | wc`); peer: `cat FILE | wc -c` in the host's sh on a
  host file of the same size.
- sh-ls-wc: wall time of `sh -c 'ls | wc'` inside Rv6, when /bin/sh, ls and wc exist in
  the fs (the userland's programs); no row otherwise.

Ratios: redleaf over each peer (how many times slower, for times; the share, for rates).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from redleaf.bench import row, summarize
from redleaf.bench.peers import time_calls

B = "rv6"
NOP = b"def main(argv):\n    return 0\n"
WRITER = b"""
from redleaf.rv6 import ulib

def main(argv):
    block = b"x" * ulib.MAX_IO
    for _ in range(int(argv[1])):
        ulib.write(1, block)
"""
READER = b"""
from redleaf.rv6 import ulib

def main(argv):
    n = 0
    while True:
        b = ulib.read(0, ulib.MAX_IO)
        if not b:
            break
        n += len(b)
    return 0 if n == int(argv[1]) else 1
"""
KERNEL = """
[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"

[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
uses = ["nvme0"]
config = { bdev = "nvme0", mkfs_if_blank = true }

[[domain]]
name = "rv6kernel"
target = "redleaf.rv6.kernel_domain:KernelDomain"
uses = ["rv6fs"]
may_spawn = true
spawn_target = "redleaf.rv6.user_host:UserProgram"
config = { fs = "rv6fs" }
"""


def _install(ulib, path: str, data: bytes) -> None:
    fd = ulib.open(path, ulib.O_CREATE | ulib.O_WRONLY | ulib.O_TRUNC)
    try:
        ulib.write(fd, data)
    finally:
        ulib.close(fd)


def _host_spawn(argv: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ)
        os.waitpid(pid, 0)
        out.append(time.perf_counter() - t0)
    return out


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench rv6")
    ap.add_argument("-n", type=int, default=5000, help="system calls timed")
    ap.add_argument("--spawns", type=int, default=40, help="spawn+exit+wait rounds")
    ap.add_argument("--pipe-mib", type=int, default=256, help="MiB through the pipe (big enough that starting the two programs is not what is timed)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    n, spawns, mib = (500, 10, 4) if a.quick else (a.n, a.spawns, a.pipe_mib)
    rows: list[dict] = []
    med: dict[tuple[str, str], float] = {}

    def add(case, system, samples, unit):
        rs = summarize(B, case, system, samples, unit)
        med[(case, system)] = rs[0]["value"]
        rows.extend(rs)

    from redleaf.domains.builtin.echo import Echo
    from redleaf.drivers.nvme.manifests import nvme_manifest
    from redleaf.rv6 import ulib
    from redleaf.rv6.kernel_interface import Rv6Sys
    from redleaf.supervisor.instance import Instance

    tmp = tempfile.mkdtemp(prefix="redleaf-bench-rv6-")
    try:
        image = os.path.join(tmp, "nvme0.img")
        with Instance(nvme_manifest(image, "256MiB", heap="128MiB") + KERNEL) as inst:
            with inst.attach() as c:
                k = c.lookup("rv6kernel", Rv6Sys)
                e = c.lookup("echo", Echo)
                ulib._bind(k)
                for _ in range(200):
                    k.getpid(), e.null()
                add("getpid", "redleaf", time_calls(k.getpid, n), "us")
                add("null-call", "redleaf", time_calls(e.null, n), "us")
                add("getpid", "host-os", time_calls(os.getpid, n), "us")

                _install(ulib, "/bin/nop", NOP)
                _install(ulib, "/bin/bw", WRITER)
                _install(ulib, "/bin/br", READER)

                def spawn_wait():
                    pid = ulib.spawn("/bin/nop", ["nop"])
                    got = ulib.wait(pid)
                    if got[1] != 0:
                        raise RuntimeError(f"/bin/nop exited {got[1]}")

                # interleaved with its peers, so a change in the machine's load hits all alike
                true = shutil.which("true") or "/bin/true"
                ours, py, tr = [], [], []
                spawn_wait()
                for _ in range(spawns):
                    ours += time_calls(spawn_wait, 1)
                    py += _host_spawn([sys.executable, "-c", "pass"], 1)
                    tr += _host_spawn([true], 1)
                add("spawn-exit-wait", "redleaf", ours, "ms")
                add("spawn-python-pass", "host-os", py, "ms")
                add("spawn-true", "host-os", tr, "ms")

                blocks = mib            # writes of MAX_IO (1 MiB) bytes, as cat writes its buffer
                r, w = ulib.pipe()
                t0 = time.perf_counter()
                wp = ulib.spawn("/bin/bw", ["bw", str(blocks)], [-1, w])
                rp = ulib.spawn("/bin/br", ["br", str(blocks * ulib.MAX_IO)], [r])
                ulib.close(r)
                ulib.close(w)
                done = dict([ulib.wait(), ulib.wait()])
                dt = time.perf_counter() - t0
                if done != {wp: 0, rp: 0}:
                    raise RuntimeError(f"the pipe's programs exited {done}")
                mib_sent = blocks * ulib.MAX_IO / (1 << 20)
                rows.append(row(B, "pipe", "redleaf", "rate", mib_sent / dt, "MiB/s"))
                med[("pipe", "redleaf")] = mib_sent / dt
                # the host's pipeline right after, on a host file of the same size
                big = os.path.join(tmp, "big")
                with open(big, "wb") as f:
                    f.write(b"x" * (mib << 20))
                t0 = time.perf_counter()
                subprocess.run(["sh", "-c", f"cat {big} | wc -c"], check=True, capture_output=True)
                dt = time.perf_counter() - t0
                rows.append(row(B, "pipe", "host-os", "rate", mib / dt, "MiB/s"))
                med[("pipe", "host-os")] = mib / dt

                have_sh = all(_exists(ulib, p) for p in ("/bin/sh", "/bin/ls", "/bin/wc"))
                if have_sh:
                    def sh_ls_wc():
                        pid = ulib.spawn("/bin/sh", ["sh", "-c", "ls | wc"], [-1, -1, -1])
                        ulib.wait(pid)

                    add("sh-ls-wc", "redleaf", time_calls(sh_ls_wc, max(3, spawns // 4)), "ms")
                ulib._bind(None)

    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ratio(case, name, a_key, b_key):
        if a_key in med and b_key in med and med[b_key] > 0:
            rows.append(row(B, case, name, "ratio", med[a_key] / med[b_key], "x"))

    ratio("getpid", "redleaf/host-os", ("getpid", "redleaf"), ("getpid", "host-os"))
    ratio("getpid", "redleaf-getpid/redleaf-null-call", ("getpid", "redleaf"), ("null-call", "redleaf"))
    ratio("spawn-exit-wait", "redleaf/host-os-python-pass", ("spawn-exit-wait", "redleaf"),
          ("spawn-python-pass", "host-os"))
    ratio("spawn-exit-wait", "redleaf/host-os-true", ("spawn-exit-wait", "redleaf"), ("spawn-true", "host-os"))
    ratio("pipe", "redleaf/host-os", ("pipe", "redleaf"), ("pipe", "host-os"))
    return rows


def _exists(ulib, path: str) -> bool:
    try:
        ulib.stat(path)
        return True
    except ulib.Rv6Error:
        return False
