"""The terminal of `redleaf sh`: an attached client that runs a program on Rv6 (by
default /bin/sh) with the console bound to this process's stdin and stdout.

Owns: the client side of a session's console: feeding what the user types (or what a
pipe holds) into it, copying what programs write to it onto stdout, waiting for the
program and exiting with its status. Calls: the domain runtime's `attach`, the `Rv6Sys`
proxy (rv6/kernel_interface.py). Run as `python -m redleaf.rv6.terminal` (the CLI
execs it: the supervisor's code never imports Rv6).

The kernel gives this client a session process whose descriptors 0, 1, 2 are its
console; the spawned program inherits them. Nothing blocks in the kernel, so this loop
asks: output is drained, input offered, the program's exit looked for; then it sleeps
on its doorbell (and stdin), which the kernel rings when a program writes to the
console or the program exits (the reader thread rings it for a typed line).

On a terminal, lines are read with Python's readline (line editing, history in
~/.rv6_history) in a reader thread, and ^D is EOF; from a pipe, bytes go in as they
come and the pipe's end is EOF. On a terminal ^C kills what runs under /bin/sh (or the
program itself when it is not a shell): Rv6 has no process groups, so this is the
session's descendants, not a foreground job. When this client ends (killed, or its
pipe closed), its session ends: what it ran sees EOF on the console, output dropped.
"""

from __future__ import annotations

import argparse
import errno
import os
import queue
import select
import signal
import sys
import threading
import time

from redleaf.domains import attach
from redleaf.domains.errors import ControlError, RedleafError, RpcError

from .kernel.errors import Rv6Error
from .kernel_interface import MAX_RW, Rv6Sys

_POLL_MIN_S = 0.001
#: the longest sleep between looks: the kernel rings us when output or the program's
#: exit may be there, so this is only a backstop
_POLL_MAX_S = 0.5
_EOF = object()


class KernelLost(RuntimeError):
    """The kernel died under the session: the program is gone with it."""


def _reader(q: queue.Queue, ring) -> None:
    """Lines from an interactive terminal, edited with readline; ring() wakes the loop."""
    try:
        import readline  # noqa: F401 - input() edits lines once it is imported

        hist = os.path.expanduser("~/.rv6_history")
        try:
            readline.read_history_file(hist)
        except OSError:
            pass
    except ImportError:
        readline, hist = None, None
    while True:
        try:
            line = input()
        except EOFError:
            q.put(_EOF)
            ring()
            break
        if readline is not None and line.strip():
            try:
                readline.append_history_file(1, hist)
            except OSError:
                pass
        q.put((line + "\n").encode())
        ring()


def run(instance: str, program: str, argv: list[str], kernel: str = "rv6kernel") -> int:
    with attach(instance) as c:
        try:
            k = c.lookup(kernel, Rv6Sys)
        except (ControlError, RedleafError, LookupError) as e:
            raise SystemExit(f"redleaf sh: instance {instance!r} has no Rv6 kernel ({kernel}): {e}")
        pid = k.spawn(program, tuple(argv), None)
        interactive = os.isatty(0)
        lines: queue.Queue = queue.Queue()
        bell = c.rt.bell
        if interactive:
            threading.Thread(target=_reader, args=(lines, bell.ring), daemon=True).start()
        pending = b""
        stdin_open = True
        # ^C kills what runs under the shell (the shell itself survives it, as a shell
        # ignores SIGINT at its prompt); a program run without a shell is killed
        interrupts = []
        spare = program.rsplit("/", 1)[-1] == "sh"
        if interactive:
            signal.signal(signal.SIGINT, lambda *_: (interrupts.append(1), bell.ring()))
        delay = _POLL_MIN_S
        out = sys.stdout.buffer
        while True:
            busy = False
            if interrupts:
                interrupts.clear()
                k.console_interrupt(spare)
                out.write(b"^C\n")
            data = k.console_output(MAX_RW)
            if data:
                out.write(data)
                out.flush()
                busy = True
            if stdin_open and not pending:
                if interactive:
                    try:
                        item = lines.get_nowait()
                    except queue.Empty:
                        item = None
                    if item is _EOF:
                        k.console_eof()
                        stdin_open = False
                    elif item is not None:
                        pending = item
                elif select.select([0], [], [], 0)[0]:
                    chunk = os.read(0, MAX_RW)
                    if chunk:
                        pending = chunk
                    else:
                        k.console_eof()
                        stdin_open = False
            if pending:
                took = k.console_input(pending)
                pending = pending[took:]
                busy = busy or took > 0
            try:
                r = k.wait(pid)
            except Rv6Error as e:
                if e.errno != errno.ECHILD:
                    raise
                # our session is new: the kernel restarted, and what we ran died with it
                raise KernelLost(f"the Rv6 kernel restarted; {program} (pid {pid}) ended with it") from None
            if r is not None:
                while True:  # what it wrote last
                    data = k.console_output(MAX_RW)
                    if not data:
                        break
                    out.write(data)
                out.flush()
                return r[1]
            if busy:
                delay = _POLL_MIN_S
                continue
            # sleep until the kernel rings (output, the exit), input comes, or the backstop
            if not interactive and stdin_open:
                if bell.fd in select.select([0, bell.fd], [], [], delay)[0]:
                    bell.drain()
            else:
                c.rt.doze(delay)
            delay = min(delay * 2, _POLL_MAX_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="redleaf sh", description="Rv6's shell on a running instance")
    p.add_argument("--name", default=os.environ.get("REDLEAF_INSTANCE", "default"), help="instance name")
    p.add_argument("-c", dest="command", help="run this command line and exit with its status")
    p.add_argument("--program", default="/bin/sh", help="the Rv6 program to run (default /bin/sh)")
    p.add_argument("args", nargs="*", help="more arguments for the program")
    a = p.parse_args(argv)
    name = a.program.rsplit("/", 1)[-1] or a.program
    prog_argv = [name] + (["-c", a.command] if a.command is not None else []) + a.args
    try:
        return run(a.name, a.program, prog_argv)
    except Rv6Error as e:
        print(f"redleaf sh: {a.program}: {e.strerror} ({os.strerror(e.errno)})", file=sys.stderr)
        return 127 if e.errno == errno.ENOENT else 126
    except KernelLost as e:
        print(f"redleaf sh: {e}", file=sys.stderr)
        return 1
    except RpcError as e:  # a call in flight when the kernel died
        print(f"redleaf sh: the Rv6 kernel failed a call ({str(e).splitlines()[0]}); "
              f"{a.program} ended with it", file=sys.stderr)
        return 1
    except RedleafError as e:
        print(f"redleaf sh: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
