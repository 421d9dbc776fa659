"""`rv6-usertests`: Rv6 programs run through the kernel while faults hit the stack
under them, their output and exit status checked.

The instance: the NVMe device, its driver and shadow (nvme0), rv6fs on a fresh image
(formatted at the first mount, with the user programs in /bin), and rv6kernel on
rv6fs, each with a restart policy a campaign cannot exhaust.  The client attaches
(the kernel gives it a session whose console it drains) and each round runs one
program line of a small fixed mix (round_script): /bin/sh -c with a pipeline through
a file (`echo x > f; cat f | wc`) or a pipeline of three programs, or a single
usertests case by name in a directory of its own that the round makes and removes
through its session's system calls.  A round must
exit 0 and print exactly what it prints on a healthy system.

Errors: a fault of the driver (nvme0.driver) or the device (nvme0-dev) must be
invisible: the shadow hides it from rv6fs, so no program sees it.  A fault of rv6fs,
rv6kernel or the shadow nvme0 (rv6fs panics on its failed call and restarts) may
show as the outage errors of base.py on our kernel calls, as an Rv6Error (ECHILD when
the kernel restarted and our session is new, EIO from a file of a restarted fs), or
as a program's failure: a status other than 0 or other output (`ProgramFailed`);
those are expected only when the wave hit one of them.  A round that does not end
within ROUND_S is a problem (a program left hanging), and its program is killed.

May call: domains (attach, errors), drivers (nvme manifests), rv6 (the Rv6Sys
interface and its errors), shared_heap.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time

from .base import OUTAGE_ERRORS, Recorder, Workload
from .nvme_rw import shadowed_nvme_manifest

KERNEL = "rv6kernel"
FS = "rv6fs"
SHADOW = "nvme0"
#: the targets whose fault a program may see (the shadow: rv6fs panics without it)
VISIBLE = (KERNEL, FS, SHADOW)
PROGRAM_FAILED = "ProgramFailed"
#: usertests cases that take well under a second each (the whole suite takes minutes)
CASES = ("opentest", "writetest", "createtest", "dirtest", "pipe1", "linktest", "unlinkread", "truncate1",
         "rmdot", "dirfile", "sharedfd")
#: the longest a round may take before its program counts as left hanging
ROUND_S = 60.0
_POLL_MIN_S = 0.001
_POLL_MAX_S = 0.05
PAUSE_AFTER_ERROR_S = 0.01

KERNEL_DOMAINS = """
[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.005
backoff_max_s = 0.05
uses = ["nvme0"]
config = { bdev = "nvme0", mkfs_if_blank = true, cache_mb = 8, bdev_deadline_s = 15.0 }

[[domain]]
name = "rv6kernel"
target = "redleaf.rv6.kernel_domain:KernelDomain"
restart = "permanent"
max_restarts = 1000000
period_s = 1.0
backoff_s = 0.005
backoff_max_s = 0.05
uses = ["rv6fs"]
may_spawn = true
spawn_target = "redleaf.rv6.user_host:UserProgram"
config = { fs = "rv6fs" }
"""


def round_script(rng: random.Random, i: int) -> tuple[str, tuple[str, ...], str]:
    """Round i: the program, its argv, and what it prints on a healthy system (its
    status is 0).  A usertests case runs in a directory of its own (/u{i}, which the
    round makes, enters and removes through its session's own system calls: two
    programs fewer than a shell line)."""
    pick = rng.randrange(4)
    if pick == 0:
        word = f"x{i}"
        line = f"mkdir /r{i}; cd /r{i}; echo {word} > f; cat f | wc; rm f; cd /; rmdir /r{i}"
        return "/bin/sh", ("sh", "-c", line), f"1 1 {len(word) + 1} \n"
    if pick == 1:
        return "/bin/sh", ("sh", "-c", f"echo a{i} b c | grep b | wc"), f"1 3 {len(f'a{i} b c') + 1} \n"
    case = rng.choice(CASES)
    return "/bin/usertests", ("usertests", case), f"usertests starting\ntest {case}: OK\nALL TESTS PASSED\n"


def judge(status: int, output: str, want: str) -> str | None:
    """What is wrong with a round's outcome, in words; None if nothing."""
    if status == 0 and output == want:
        return None
    return f"exit status {status}, output {output!r} (expected status 0, output {want!r})"


class _Lost(Exception):
    """The round ended without an outcome (a call failed; recorded already)."""


class Rv6UsertestsWorkload(Workload):
    name = "rv6-usertests"
    targets = "rv6fs,rv6kernel,nvme0*"
    # not the shadow's nor the driver's methods: the fs commits its log only when it
    # fills (nothing here syncs), so seconds go by without a call reaching them and an
    # armed fault would mostly wait out the campaign's FIRE_S; they get the signals
    methods = {KERNEL: ("spawn", "wait", "console_output", "open", "read", "write"),
               FS: ("open", "read", "write", "stat", "close")}
    deadline_s = 30.0  # Rv6Sys's interface deadline
    joinable = False
    joinable_why = ("boots Rv6 on an image of its own and leaves its directories there when a round is cut "
                    "short: run it on an instance of its own")

    def __init__(self, tmpdir: str):
        super().__init__(tmpdir)
        self.seed = 0
        self.rounds = self.passed = 0

    def manifest(self) -> str:
        return shadowed_nvme_manifest(os.path.join(self.tmpdir, "nvme0.img"), "16MiB") \
            + KERNEL_DOMAINS

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        return (kind in OUTAGE_ERRORS or kind == PROGRAM_FAILED or kind.startswith("Rv6Error(")) \
            and bool(targets & set(VISIBLE))

    def _call(self, what: str, fn, *args):
        from redleaf.rv6.kernel.errors import Rv6Error

        try:
            with self.rec.call(what, self.deadline_s) as c:
                v = fn(*args)
        except Rv6Error as e:
            self.rec.error(f"Rv6Error({errno.errorcode.get(e.errno, e.errno)})", f"{what}: {e}")
            raise _Lost from None
        if c.failed:
            raise _Lost
        return v

    def _run_program(self, k, doze, path: str, argv: tuple[str, ...]) -> tuple[int, str]:
        """Spawn the program in our session, drain the console until it exits."""
        from redleaf.rv6.kernel_interface import MAX_RW

        line = " ".join(argv)
        pid = self._call("Rv6Sys.spawn", k.spawn, path, argv, None)
        out = []
        delay = _POLL_MIN_S
        give_up = time.monotonic() + ROUND_S
        while True:
            data = self._call("Rv6Sys.console_output", k.console_output, MAX_RW)
            if data:
                out.append(data)
                delay = _POLL_MIN_S
                continue
            r = self._call("Rv6Sys.wait", k.wait, pid)
            if r is not None:
                while data := self._call("Rv6Sys.console_output", k.console_output, MAX_RW):
                    out.append(data)  # what it wrote last
                return r[1], b"".join(out).decode("utf-8", "replace")
            if time.monotonic() > give_up:
                self.rec.problem(f"{line!r} did not finish within {ROUND_S:g}s (killed); it printed "
                                 f"{b''.join(out)[-200:]!r}")
                self._call("Rv6Sys.kill", k.kill, pid)
                raise _Lost
            doze(delay)  # the kernel rings our doorbell on output and on the exit
            delay = min(delay * 2, _POLL_MAX_S)

    def _round(self, k, doze, i: int, path: str, argv: tuple[str, ...]) -> tuple[int, str]:
        if path != "/bin/usertests":
            return self._run_program(k, doze, path, argv)
        home = f"/u{i}"
        self._call("Rv6Sys.mkdir", k.mkdir, home)
        self._call("Rv6Sys.chdir", k.chdir, home)  # the program inherits our session's directory
        try:
            return self._run_program(k, doze, path, argv)
        finally:
            # the case removed what it made; a case cut short leaves its directory behind
            self._call("Rv6Sys.chdir", k.chdir, "/")
            self._call("Rv6Sys.rmdir", k.rmdir, home)

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        from redleaf.domains import attach
        from redleaf.rv6.kernel_interface import Rv6Sys

        rng = random.Random(self.seed)
        with attach(instance) as d:
            k = d.lookup(KERNEL, Rv6Sys)
            i = 0
            while not stop.is_set():
                self.gate()
                i += 1
                path, argv, want = round_script(rng, i)
                self.rounds += 1
                try:
                    status, output = self._round(k, d.rt.doze, i, path, argv)
                except _Lost:
                    time.sleep(PAUSE_AFTER_ERROR_S)
                    continue
                wrong = judge(status, output, want)
                if wrong:
                    rec.error(PROGRAM_FAILED, f"{' '.join(argv)!r}: {wrong}")
                    time.sleep(PAUSE_AFTER_ERROR_S)
                else:
                    self.passed += 1

    def final_problems(self) -> list[str]:
        if self.rounds and not self.passed:
            return [f"none of the {self.rounds} rounds passed"]
        return []
