"""Domains that misbehave on purpose, for the fault tests."""

import os
import time


class RaisesInInit:
    def __init__(self, ctx):
        raise ValueError("constructor refused to start")


class DiesSoon:
    def __init__(self, ctx):
        pass

    def run(self):
        time.sleep(0.05)
        os._exit(3)


class ExitsInInit:
    """Dies during start without reporting init_failed (a native crash, os._exit)."""

    def __init__(self, ctx):
        os._exit(3)


class ForksGrandchild:
    """Forks a process of its own (a sleeping grandchild) and writes its pid to the
    file named by config["pidfile"]: it must die with the domain."""

    def __init__(self, ctx):
        pid = os.fork()
        if pid == 0:
            try:
                os.execvp("sleep", ["sleep", "600"])
            finally:
                os._exit(127)
        tmp = ctx.config["pidfile"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, ctx.config["pidfile"])
