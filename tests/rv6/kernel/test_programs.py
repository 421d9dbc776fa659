"""User programs on a real kernel instance: spawn, exit status, wait, descriptor
inheritance, pipes with EOF and EPIPE, kills, orphans, faults of programs and bad
calls, all through ulib bound to the test's own session."""

from __future__ import annotations

import errno
import os
import signal
import time

import numpy as np
import pytest

from redleaf.domains import BadArgument
from redleaf.domains.errors import ControlError
from redleaf.rv6 import ulib
from redleaf.rv6.kernel.errors import Rv6Error

HI = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.printf("hi %s\\n", " ".join(argv[1:]))
    return 3
"""

EXIT_EARLY = """
from redleaf.rv6 import ulib

def main(argv):
    try:
        ulib.exit(5)
    finally:
        ulib.puts("a finally after exit ran")
    return 0
"""

BOOM = """
def helper():
    return 1 // 0

def main(argv):
    helper()
"""

HARD_EXIT = """
import os

def main(argv):
    os._exit(4)
"""

SPAWN_AND_WAIT = """
from redleaf.rv6 import ulib

def main(argv):
    pid = ulib.spawn("/bin/hi", ["hi", "from", "child"])
    got, status = ulib.wait()
    assert got == pid
    try:
        ulib.wait()
    except ulib.Rv6Error as e:
        ulib.printf("then %d\\n", e.errno)
    return status + 10
"""

# writes argv[1] KiB of a pattern to fd 1, then exits
WRITER = """
from redleaf.rv6 import ulib

def main(argv):
    block = bytes(range(256)) * 4
    for _ in range(int(argv[1])):
        ulib.write(1, block)
    return 0
"""

# counts what fd 0 holds up to EOF, prints the count and a checksum on fd 2
COUNTER = """
from redleaf.rv6 import ulib

def main(argv):
    n, total = 0, 0
    while True:
        b = ulib.read(0, 8192)
        if not b:
            break
        n += len(b)
        total = (total + sum(b)) % 1000003
    ulib.fprintf(2, "count %d sum %d\\n", n, total)
    return 0
"""

# writes until the pipe has no reader; its status is the errno
YES = """
from redleaf.rv6 import ulib

def main(argv):
    try:
        while True:
            ulib.write(1, b"y\\n" * 512)
    except ulib.Rv6Error as e:
        return e.errno
"""

SLEEPER = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.puts("sleeping %d" % ulib.getpid())
    ulib.sleep(60000)
    return 0
"""

ORPHAN_PARENT = """
from redleaf.rv6 import ulib

def main(argv):
    pid = ulib.spawn("/bin/orphan_child", ["orphan_child"])
    ulib.printf("child %d\\n", pid)
    return 0
"""

ORPHAN_CHILD = """
from redleaf.rv6 import ulib

def main(argv):
    while ulib.getppid() != 1:
        ulib.sleep(5)
    ulib.puts("orphan now a child of init")
    return 0
"""

INHERIT = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.write(1, b"into the file\\n")
    try:
        ulib.write(0, b"x")
    except ulib.Rv6Error as e:
        ulib.write(1, b"fd0 %d\\n" % e.errno)
    return 0
"""


@pytest.fixture(scope="module")
def k(kernel):
    for name, src in (("hi", HI), ("exit_early", EXIT_EARLY), ("boom", BOOM), ("hard_exit", HARD_EXIT),
                      ("spawn_and_wait", SPAWN_AND_WAIT), ("writer", WRITER), ("counter", COUNTER),
                      ("yes", YES), ("sleeper", SLEEPER), ("orphan_parent", ORPHAN_PARENT),
                      ("orphan_child", ORPHAN_CHILD), ("inherit", INHERIT),
                      ("bad_syntax", "def main(argv):\n    return (\n")):
        kernel.install(name, src)
    kernel.console()
    return kernel


def test_a_program_writes_to_its_console_and_its_return_is_the_status(k):
    assert k.run("hi", ["hi", "there"]) == (3, b"hi there\n")


def test_exit_ends_the_program_at_once(k):
    assert k.run("exit_early") == (5, b"")


def test_a_program_that_raises_exits_1_with_a_one_line_summary_on_fd2(k):
    status, out = k.run("boom")
    assert status == 1
    line = out.decode()
    assert line.count("\n") == 1 and "/bin/boom:3 in helper" in line and "ZeroDivisionError" in line


def test_a_program_that_os_exits_gets_that_status_from_its_death(k):
    assert k.run("hard_exit")[0] == 4


def test_missing_syntax_error_and_directory_are_spawn_errors(k):
    for path, err in (("/bin/nope", errno.ENOENT), ("/bin/bad_syntax", errno.ENOEXEC), ("/bin", errno.EACCES)):
        with pytest.raises(Rv6Error) as ei:
            ulib.spawn(path, [path])
        assert ei.value.errno == err, path
    assert "SyntaxError" in str(ei.value.strerror) or True
    assert k.run("hi")[0] == 3  # the kernel is unharmed


def test_a_program_spawns_and_waits_for_its_own_child(k):
    status, out = k.run("spawn_and_wait")
    assert status == 13
    assert out == b"hi from child\nthen %d\n" % errno.ECHILD


def test_wait_without_children_is_echild(k):
    with pytest.raises(Rv6Error) as ei:
        ulib.wait()
    assert ei.value.errno == errno.ECHILD


def test_descriptors_are_inherited_as_the_fds_list_says(k):
    fd = ulib.open("/tmp/inherit.out", ulib.O_CREATE | ulib.O_RDWR | ulib.O_TRUNC)
    status, out = k.run("inherit", fds=[-1, fd])
    assert status == 0 and out == b""
    ulib.lseek(fd, 0, ulib.SEEK_SET)
    assert ulib.read_all(fd) == b"into the file\nfd0 %d\n" % errno.EBADF  # fd 0 was left closed
    ulib.close(fd)
    assert ulib.stat("/tmp/inherit.out").size == len(b"into the file\nfd0 9\n")


def test_a_pipe_between_two_programs_carries_everything_then_eof(k):
    r, w = ulib.pipe()
    kib = 1000  # several times the pipe's 256 KiB: both sides block and resume
    wpid = ulib.spawn("/bin/writer", ["writer", str(kib)], [-1, w])
    rpid = ulib.spawn("/bin/counter", ["counter"], [r, -1, 2])
    ulib.close(r)
    ulib.close(w)
    done = dict([ulib.wait(), ulib.wait()])
    assert done == {wpid: 0, rpid: 0}
    want = sum(range(256)) * 4 * kib % 1000003
    assert k.console() == b"count %d sum %d\n" % (kib * 1024, want)


def test_a_writer_whose_reader_is_gone_gets_epipe(k):
    r, w = ulib.pipe()
    ypid = ulib.spawn("/bin/yes", ["yes"], [-1, w])
    ulib.close(w)
    assert ulib.read(r, 10) == b"y\ny\ny\ny\ny\n"
    ulib.close(r)  # the last reader
    assert ulib.wait(ypid) == (ypid, errno.EPIPE)


def test_a_writer_killed_mid_pipeline_gives_its_reader_eof(k):
    r, w = ulib.pipe()
    ypid = ulib.spawn("/bin/yes", ["yes"], [-1, w])
    cpid = ulib.spawn("/bin/counter", ["counter"], [r, -1, 2])
    ulib.close(r)
    ulib.close(w)
    st = ulib.fstat(1)
    assert st.type == ulib.T_DEV
    ulib.sleep(50)  # let some bytes through (not a synchronisation: any count passes)
    ulib.kill(ypid)
    assert dict([ulib.wait(), ulib.wait()]) == {ypid: 137, cpid: 0}
    assert k.console().startswith(b"count ")


def test_a_program_killed_from_outside_by_sigkill_is_reaped_with_137(k):
    pid = ulib.spawn("/bin/sleeper", ["sleeper"])
    k.wait_console(b"sleeping %d" % pid)
    os.kill(k.os_pid(pid), signal.SIGKILL)
    assert ulib.wait(pid) == (pid, 137)


def test_an_orphan_goes_to_init_and_init_reaps_it(k):
    status, out = k.run("orphan_parent")
    assert status == 0
    child = int(out.split()[1])
    k.wait_console(b"orphan now a child of init")
    # init reaps it: it leaves the table once its exit is seen
    deadline = time.monotonic() + 30
    while any(p[0] == child for p in ulib.procs()):
        assert time.monotonic() < deadline, ulib.procs()
        time.sleep(0.005)
    with pytest.raises(Rv6Error) as ei:
        ulib.wait()
    assert ei.value.errno == errno.ECHILD  # it was never ours to wait for


def test_wrong_argument_types_are_the_callers_error_and_the_kernel_lives(k):
    before = k.inst.status()["rv6kernel"]["pid"]
    sys = k.sys
    for call, args in ((sys.open, (3, 0)), (sys.read, ("0", k.c.heap.alloc_vec(np.uint8, 1), 1)),
                       (sys.spawn, ("/bin/hi", ["hi"], None)),
                       (sys.write, (1, "text", 4)), (sys.wait, (None,)), (sys.dup2, (1.5, 2))):
        with pytest.raises(BadArgument):
            call(*args)
    c = k.c
    big = c.heap.alloc_vec(np.uint8, ulib.MAX_IO + 1)
    for call, args, err in ((sys.read, (99, c.heap.alloc_vec(np.uint8, 1), 1), errno.EBADF),
                            (sys.open, ("/x", 0xFFFF), errno.EINVAL),
                            (sys.kill, (1,), errno.EPERM), (sys.kill, (99999,), errno.ESRCH),
                            (sys.write, (1, big, ulib.MAX_IO + 1), errno.EINVAL),
                            (sys.write, (1, c.heap.alloc_vec(np.float64, 4), 4), errno.EFAULT),
                            (sys.read, (0, c.heap.alloc_vec(np.uint8, 4), 8), errno.EINVAL),
                            (sys.lseek, (1, 0, 0), errno.ESPIPE), (sys.chdir, ("/bin/hi",), errno.ENOTDIR),
                            (sys.exec_image, (0,), errno.ENOEXEC), (sys.exit, (0,), errno.EPERM)):
        with pytest.raises(Rv6Error) as ei:
            call(*args)
        assert ei.value.errno == err, (call, args)
    assert k.inst.status()["rv6kernel"]["pid"] == before
    assert k.run("hi")[0] == 3


def test_files_through_the_kernel(k):
    ulib.mkdir("/tmp/d")
    ulib.chdir("/tmp/d")
    assert ulib.getcwd() == "/tmp/d"
    fd = ulib.open("f", ulib.O_CREATE | ulib.O_WRONLY)
    assert ulib.write(fd, b"abc") == 3
    d = ulib.dup(fd)
    ulib.write(d, b"def")  # shares the offset
    ulib.close(fd)
    ulib.close(d)
    with pytest.raises(Rv6Error) as ei:
        ulib.open("f", ulib.O_CREATE | ulib.O_EXCL | ulib.O_WRONLY)
    assert ei.value.errno == errno.EEXIST
    ulib.link("f", "g")
    assert ulib.stat("/tmp/d/g").nlink == 2
    ulib.rename("g", "h")
    names = {e[0]: e[2] for e in ulib.readdir(".")}
    assert names == {".": ulib.T_DIR, "..": ulib.T_DIR, "f": ulib.T_FILE, "h": ulib.T_FILE}
    fd = ulib.open("h", ulib.O_RDONLY)
    assert ulib.readline(fd) == b"abcdef" and ulib.read(fd, 5) == b""
    ulib.close(fd)
    fd = ulib.open("h", ulib.O_WRONLY | ulib.O_APPEND)
    ulib.write(fd, b"\nghi\n")
    ulib.close(fd)
    fd = ulib.open("f")
    assert [ulib.readline(fd) for _ in range(3)] == [b"abcdef\n", b"ghi\n", b""]
    assert ulib.fstat(fd).type == ulib.T_FILE
    ulib.close(fd)
    for n in ("f", "h"):
        ulib.unlink(n)
    ulib.chdir("..")
    with pytest.raises(Rv6Error) as ei:
        ulib.rmdir("/tmp")
    assert ei.value.errno == errno.ENOTEMPTY
    ulib.rmdir("d")
    assert ulib.stat("/dev/console").type == ulib.T_DEV
    ulib.chdir("/")


def test_descriptor_table_runs_out_with_emfile_and_recovers(k):
    fds = []
    with pytest.raises(Rv6Error) as ei:
        while True:
            fds.append(ulib.open("/dev/console", ulib.O_RDWR))
    assert ei.value.errno == errno.EMFILE and len(fds) >= 13
    for fd in fds:
        ulib.close(fd)


def test_only_a_may_spawn_domain_spawns_and_only_its_own_children_die_by_it(k):
    ctl = k.c.rt.ctl
    with pytest.raises(ControlError) as ei:
        ctl.request("spawn_child", config={})
    assert ei.value.kind == "AuthError"
    with pytest.raises(ControlError) as ei:
        ctl.request("kill_child", child=k.inst.status()["rv6kernel"]["id"])
    assert ei.value.kind == "NotFound"


MINI_SH = """
from redleaf.rv6 import ulib

def main(argv):
    pid = ulib.spawn("/bin/sleeper", ["sleeper"])
    got = ulib.wait(pid)
    ulib.printf("job %d ended %d\\n", got[0], got[1])
    return 0
"""


def test_console_interrupt_kills_the_job_and_spares_the_shell_when_asked(k):
    k.install("mini_sh", MINI_SH)
    sh = ulib.spawn("/bin/mini_sh", ["mini_sh"])
    seen = k.wait_console(b"sleeping")
    job = int(seen.split(b"sleeping ")[1].split()[0])
    assert k.sys.console_interrupt(True) == 1
    assert ulib.wait(sh) == (sh, 0)
    assert k.wait_console(b"\n") == b"job %d ended 137\n" % job
    lone = ulib.spawn("/bin/sleeper", ["sleeper"])
    k.wait_console(b"sleeping")
    assert k.sys.console_interrupt(False) == 1
    assert ulib.wait(lone) == (lone, 137)
    assert k.sys.console_interrupt(False) == 0


def test_a_program_that_raises_at_import_or_has_no_main_exits_1_saying_why(k):
    k.install("import_boom", "import re\nraise ValueError('broken at import')\n")
    k.install("no_main", "X = 1\n")
    k.install("bad_status", "def main(argv):\n    return 'three'\n")
    status, out = k.run("import_boom")
    assert status == 1 and out.startswith(b"/bin/import_boom:2 in <module>: ValueError: broken at import")
    status, out = k.run("no_main")
    assert status == 1 and b"defines no main(argv)" in out
    assert k.run("bad_status") == (1, b"")


def test_a_source_that_defeats_the_compiler_is_enoexec_and_the_kernel_lives(k):
    before = k.inst.status()["rv6kernel"]["pid"]
    k.install("deep", "x = " + "-" * 200000 + "1\n")
    k.install("nul", "x = 1\0\n")
    for name in ("deep", "nul"):
        with pytest.raises(Rv6Error) as ei:
            ulib.spawn(f"/bin/{name}", [name])
        assert ei.value.errno == errno.ENOEXEC, name
    assert k.inst.status()["rv6kernel"]["pid"] == before


def test_through_ulib_every_failure_is_an_rv6error(k):
    for call, args, err in ((ulib.read, ("0", 1), errno.EINVAL), (ulib.write, (1, 12345), errno.EFAULT),
                            (ulib.write, (1, "text"), errno.EFAULT), (ulib.open, (None,), errno.EINVAL),
                            (ulib.spawn, ("/bin/hi", ["hi", 3]), errno.EINVAL), (ulib.dup2, (1, 10 ** 30), errno.EINVAL)):
        with pytest.raises(Rv6Error) as ei:
            call(*args)
        assert ei.value.errno == err, (call, args)
