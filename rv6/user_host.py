"""UserProgram: the domain a spawned Rv6 program runs in (the kernel's `spawn_target`).

Owns: running one program: fetching its source from the kernel, binding ulib to the
kernel proxy, calling `main(argv)`, and reporting its exit status. Calls: the
`Rv6Sys` proxy (its only capability, role "parent" of the supervisor's spawn_child),
rv6/ulib.py. Never the fs, never the supervisor.

The kernel read the program at spawn (so a missing file is spawn's ENOENT and a syntax
error its ENOEXEC); here it is fetched with `exec_image`, compiled and run in a fresh
module namespace. The exit status is main's return value (None: 0; not an int: 1);
`ulib.exit(n)` or `SystemExit(n)` give n; an exception escaping main gives 1 and a
one-line summary of it on fd 2. After the kernel has the status the process ends with
os._exit, so no program code (a `finally`, an atexit hook) runs after its exit.

A program may compute as long as it likes: a thread keeps the domain's heartbeat going,
so the watchdog takes it for hung only if the whole process stops (the kernel's
`kill` is how a user ends a runaway program).
"""

from __future__ import annotations

import errno

import os
import threading
import traceback

from . import ulib
from .kernel.errors import Rv6Error
from .kernel_interface import Rv6Sys

_BEAT_S = 0.25


def _summary(e: BaseException, path: str) -> str:
    """One line: where in the program, what type, what message."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    where = f"{path}:{frames[-1].lineno} in {frames[-1].name}: " if frames else f"{path}: "
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{where}{type(e).__name__}{': ' + msg if msg else ''}"


#: the status of a program whose pipe's reader left: 128 + SIGPIPE, as a Unix shell reports
EPIPE_STATUS = 141


class UserProgram:
    def __init__(self, ctx):
        self.ctx = ctx
        self.sys = ctx.use("parent", Rv6Sys)
        cfg = ctx.config
        self.path = str(cfg.get("path", "?"))
        self.argv = [str(a) for a in cfg.get("argv", [])] or [self.path]

    def _beat(self) -> None:
        ev = threading.Event()
        while not ev.wait(_BEAT_S):
            self.ctx.rt.beat_own()

    def run(self) -> None:
        threading.Thread(target=self._beat, daemon=True, name="heartbeat").start()
        status = self._run_main()
        try:
            self.sys.exit(status)
        except Exception:  # the kernel is gone or has us as dead already: nothing to tell
            pass
        os._exit(0)

    def _fetch(self) -> bytes:
        out = bytearray()
        while True:
            piece = self.sys.exec_image(len(out))
            if not piece:
                return bytes(out)
            out += piece

    def _run_main(self) -> int:
        ulib._bind(self.sys, after_exit=lambda _status: os._exit(0), doze=self.ctx.rt.doze, heap=self.ctx.heap)
        try:
            code = compile(self._fetch(), self.path, "exec", dont_inherit=True)
            ns = {"__name__": "__rv6main__", "__file__": self.path}
            exec(code, ns)
            main = ns.get("main")
            if not callable(main):
                raise Rv6Error(8, f"{self.path} defines no main(argv)")  # ENOEXEC
            r = main(list(self.argv))
        except SystemExit as e:
            r = e.code
        except Rv6Error as e:
            if e.errno != errno.EPIPE:
                return self._fault(e)
            return EPIPE_STATUS     # its reader left (`... | head`): it ends quietly, as SIGPIPE's default does
        except BaseException as e:  # noqa: BLE001 - a program's fault is its exit status
            return self._fault(e)
        if r is None:
            return 0
        if isinstance(r, bool) or not isinstance(r, int):
            return 1
        return r & 0xFF

    def _fault(self, e: BaseException) -> int:
        try:
            ulib.write(2, (_summary(e, self.path) + "\n").encode("utf-8", "replace"))
        except Exception:
            pass  # fd 2 closed, or the pipe's reader is gone: the status says it anyway
        return 1
