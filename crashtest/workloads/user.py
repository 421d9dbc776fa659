"""A user's workload, `--workload MODULE:FUNCTION`.

FUNCTION(ctx) runs the client loop in a thread of the campaign's process, attached
to the instance as a client domain.  `ctx` has:

  ctx.instance   the instance's name (for `redleaf.domains.attach(ctx.instance)`)
  ctx.stop       a threading.Event: return once it is set
  ctx.gate()     call it at the start of every round: the campaign parks the loop
                 there while it checks the invariants
  ctx.call(what, deadline_s)  a context manager around each call: times it against
                 its deadline, records an RPC error (and swallows it) so the loop
                 goes on; `.failed` tells whether it raised
  ctx.ok()       count a completed operation that did not go through ctx.call
  ctx.problem(msg)  a failed data check of the workload's own: a violation

MODULE may also define MANIFEST (TOML of the instance to boot; without it the
campaign needs --name), TARGETS (the default --targets glob), METHODS ({target:
(method, ...)} its calls reach, for faults inside a call), DEADLINE_S (its longest
call deadline) and EXPECTED (the error type names expected while one of the
targets is hit; default DomainCrashed, DomainUnavailable, RpcTimeout).

May call: crashtest.workloads.base.
"""

from __future__ import annotations

import importlib
import sys

from .base import OUTAGE_ERRORS, Recorder, Workload


class _Ctx:
    def __init__(self, wl: "UserWorkload", instance: str, rec: Recorder, stop):
        self.instance, self.rec, self.stop = instance, rec, stop
        self.gate = wl.gate
        self.call, self.ok, self.problem = rec.call, rec.ok, rec.problem


class UserWorkload(Workload):
    def __init__(self, spec: str, tmpdir: str):
        super().__init__(tmpdir)
        modname, _, fname = spec.partition(":")
        if "." not in sys.path and "" not in sys.path:
            sys.path.insert(0, "")  # the current directory, as `redleaf load` finds a user's modules
        mod = importlib.import_module(modname)
        fn = getattr(mod, fname, None)
        if not callable(fn):
            raise ValueError(f"workload {spec!r}: module {modname!r} has no function {fname!r}")
        self.name = spec
        self.fn = fn
        self.manifest_text = getattr(mod, "MANIFEST", None)
        self.targets = getattr(mod, "TARGETS", "*")
        self.methods = dict(getattr(mod, "METHODS", {}))
        self.deadline_s = float(getattr(mod, "DEADLINE_S", 10.0))
        self.expected_kinds = tuple(getattr(mod, "EXPECTED", OUTAGE_ERRORS))

    def manifest(self) -> str | None:
        return self.manifest_text

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        return kind in self.expected_kinds and bool(targets)

    def body(self, instance: str, rec: Recorder, stop) -> None:
        self.fn(_Ctx(self, instance, rec, stop))
