"""A domain whose call announces that it has begun (tests of crashes during a call).

A test that kills a callee "while it is inside our call" must know the call got
there: `Gate.enter(marker)` creates the file `marker`, holding the serving
process's pid, as the first thing the method does, and then does not return for
a long time.  Once the file exists the callee has taken the request and is
executing it, so a kill from then on lands inside the call.
"""

from __future__ import annotations

import os
import time

from redleaf.domains import interface


@interface
class Gate:
    def enter(self, marker: str, seconds: float) -> None: ...


class GateDomain(Gate):
    def __init__(self, ctx):
        ctx.export(ctx.name, self, Gate)

    def enter(self, marker: str, seconds: float) -> None:
        # write then rename: a reader never sees the file without the pid in it
        tmp = f"{marker}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.rename(tmp, marker)
        time.sleep(seconds)
