"""`redleaf sh` as a user runs it: a subprocess attached to the instance, the console
bound to its stdin/stdout, its exit status the program's. Until /bin/sh exists these
use --program with programs of the test's own."""

from __future__ import annotations

import subprocess
import time
import sys

from redleaf.rv6 import ulib

ARGS = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.printf("argv=%r cwd=%s\\n", argv, ulib.getcwd())
    return len(argv)
"""

# copies console input to console output (upper-cased) until EOF, then says how much
UPCAT = """
from redleaf.rv6 import ulib

def main(argv):
    n = 0
    while True:
        line = ulib.readline(0)
        if not line:
            break
        n += len(line)
        ulib.write(1, line.upper())
    ulib.fprintf(2, "%d bytes\\n", n)
    return 0
"""


def sh(kernel, *args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", kernel.inst.name, "sh", *args],
                          input=stdin, capture_output=True, timeout=60)


def test_sh_runs_a_program_with_c_and_exits_with_its_status(kernel):
    kernel.install("args", ARGS)
    r = sh(kernel, "--program", "/bin/args", "-c", "echo a | wc")
    assert r.returncode == 3, r.stderr
    assert r.stdout == b"argv=['args', '-c', 'echo a | wc'] cwd=/\n"


def test_sh_feeds_stdin_to_the_console_and_ends_it_with_eof(kernel):
    kernel.install("upcat", UPCAT)
    data = b"hello\nrv6 world\n" * 200
    r = sh(kernel, "--program", "/bin/upcat", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data.upper() + b"%d bytes\n" % len(data)


def test_sh_of_a_missing_program_says_so_and_exits_127(kernel):
    r = sh(kernel, "--program", "/bin/nothing-here", "-c", "x")
    assert r.returncode == 127
    assert b"/bin/nothing-here" in r.stderr and r.stderr.count(b"\n") == 1


def test_sh_without_an_instance_fails_with_a_reason():
    r = subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", "--name", "no-such-instance-x", "sh",
                        "-c", "ls"], capture_output=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith(b"redleaf sh: ") and b"no-such-instance-x" in r.stderr
    assert r.stderr.count(b"\n") == 1


# waits for console input; at EOF (its terminal hung up) leaves a mark in the fs
WAIT_EOF = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.puts("waiting")
    while ulib.read(0, 100):
        pass
    fd = ulib.open("/tmp/saw_eof", ulib.O_CREATE | ulib.O_WRONLY)
    ulib.write(fd, b"%d" % ulib.getppid())
    ulib.close(fd)
    return 0
"""


def test_a_killed_terminal_hangs_up_its_console_and_its_program_goes_to_init(kernel):
    kernel.install("wait_eof", WAIT_EOF)
    p = subprocess.Popen([sys.executable, "-m", "redleaf.supervisor.cli", "--name", kernel.inst.name, "sh",
                          "--program", "/bin/wait_eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"waiting\n"
    finally:
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
    deadline = time.monotonic() + 30
    while True:  # each call lets the kernel see the gone client (it is a poll, like xv6's init)
        try:
            st = ulib.stat("/tmp/saw_eof")
        except ulib.Rv6Error:
            st = None
        if st is not None and st.size:
            break
        ulib.procs()
        assert time.monotonic() < deadline, ulib.procs()
        time.sleep(0.01)
    fd = ulib.open("/tmp/saw_eof")
    assert ulib.read(fd, 10) == b"1"  # its parent (the session) ended: init
    ulib.close(fd)
    ulib.unlink("/tmp/saw_eof")


# a stand-in for the userland's /bin/sh: runs one word per line, prints its status
MINI_SH = """
from redleaf.rv6 import ulib

def main(argv):
    while True:
        ulib.write(2, b"$ ")
        line = ulib.readline(0)
        if not line:
            return 0
        words = line.decode().split()
        if not words:
            continue
        if words[0] == "exit":
            return int(words[1])
        pid = ulib.spawn("/bin/" + words[0], words)
        ulib.printf("[%d]\\n", ulib.wait(pid)[1])
"""

NAP = """
from redleaf.rv6 import ulib

def main(argv):
    ulib.puts("napping")
    ulib.sleep(60000)
"""


def test_sh_on_a_tty_edits_lines_and_forwards_ctrl_c_to_the_job(kernel, tmp_path):
    import os
    import pty
    import select

    kernel.install("sh", MINI_SH)
    kernel.install("nap", NAP)
    pid, fd = pty.fork()
    if pid == 0:  # the child: `redleaf sh` on the pty (history goes to the test's tmp dir)
        os.environ["HOME"] = str(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "redleaf.supervisor.cli", "--name", kernel.inst.name, "sh"])
    seen = bytearray()

    def until(needle: bytes) -> None:
        deadline = time.monotonic() + 30
        while needle not in seen:
            assert time.monotonic() < deadline, bytes(seen)
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen.extend(os.read(fd, 4096))
                except OSError:
                    break

    try:
        until(b"$ ")
        os.write(fd, b"nap\n")
        until(b"napping")
        os.write(fd, b"\x03")  # ^C: the job dies, the shell lives
        until(b"[137]")
        until(b"$ ")
        os.write(fd, b"exit 7\n")
        _pid, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7, bytes(seen)
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
