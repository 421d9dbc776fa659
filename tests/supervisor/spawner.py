"""A domain that spawns children (manifest: may_spawn, spawn_target = Child), for the
tests of spawn_child / kill_child / child_exit without Rv6 on top."""

from __future__ import annotations

import os
import time

import msgpack

from redleaf.domains import interface, raises
from redleaf.domains.errors import ControlError


class SpawnRefused(Exception):
    """The supervisor refused a spawn_child or kill_child (kind and message)."""


@interface
class Spawner:
    @raises(SpawnRefused)
    def spawn(self, how: str) -> int: ...
    @raises(SpawnRefused)
    def kill(self, child: int) -> None: ...
    def exits(self) -> bytes: ...  # msgpack [[child id, code], ...] seen so far


class SpawnerDomain(Spawner):
    def __init__(self, ctx):
        self.ctx = ctx
        self.seen: list = []

    def spawn(self, how: str) -> int:
        try:
            return self.ctx.spawn_child({"how": how})
        except ControlError as e:
            raise SpawnRefused(f"{e.kind}: {e}") from None

    def kill(self, child: int) -> None:
        try:
            self.ctx.kill_child(child)
        except ControlError as e:
            raise SpawnRefused(f"{e.kind}: {e}") from None

    def exits(self) -> bytes:
        self.seen += [[n["child"], n["code"]] for n in self.ctx.child_exits()]
        return msgpack.packb(self.seen)


class Child:
    """Exits with config["how"]: "exit3" (status 3), "sleep" (until killed)."""

    def __init__(self, ctx):
        self.how = ctx.config.get("how")
        assert set(ctx._uses) == {"parent"}, ctx._uses  # its one capability: its spawner

    def run(self):
        if self.how == "exit3":
            os._exit(3)
        while True:
            time.sleep(1)

