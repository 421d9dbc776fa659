"""The process a domain runs in: connect, map the heap, build the domain, serve.

Run in a child forked by the zygote.  Crash injection arrives as signals (the
supervisor's `redleaf kill --how ...`): SIGUSR1 raises an exception inside whatever
the domain is doing (it escapes, so the domain panics), SIGUSR2 makes it exit
cleanly with status 0, SIGRTMIN+1 makes it hang in a busy loop (the watchdog's job).
SIGTERM asks for a clean stop.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback

from .control import ControlClient
from .runtime import Runtime

SIG_HANG = signal.SIGRTMIN + 1


class InjectedFault(BaseException):
    """Raised inside a domain by `redleaf kill --how exception`.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the
    way (a dispatcher rejecting bad input, a driver retrying) can mistake the
    injected fault for an error it handles: it must escape and panic the domain."""


class DomainContext:
    """What a domain's constructor receives: its identity, config and capabilities."""

    def __init__(self, rt: Runtime, name: str, config: dict, uses: dict):
        self.rt = rt
        self.name = name
        self.domain_id = rt.domain_id
        self.config = config
        self.heap = rt.heap
        self._uses = uses
        self._granted: dict = {}

    def use(self, role: str, iface: type, reentrant: bool = True):
        """The proxy for a capability granted by the manifest's `uses` (`reentrant`: see
        Runtime.lookup)."""
        if role not in self._uses:
            raise KeyError(f"domain {self.name!r} was not granted {role!r}; add it to `uses` in the manifest")
        p = self._granted.get((role, iface, reentrant))
        if p is None:
            p = self._granted[(role, iface, reentrant)] = self.rt.lookup(self._uses[role], iface, reentrant=reentrant)
        return p

    def lookup(self, name: str, iface: type):
        return self.rt.lookup(name, iface)

    def export(self, name: str, obj, iface: type | None = None) -> None:
        self.rt.export(name, obj, iface)

    # -- children (only for a domain whose manifest entry says may_spawn = true) -------
    def spawn_child(self, config: dict) -> int:
        """Start a child domain running the manifest's `spawn_target` with `config`; its
        domain id.  The child's one capability is this domain (role "parent"), and it
        dies with this incarnation.  ControlError (kind AuthError) without may_spawn."""
        return self.rt.ctl.request("spawn_child", config=config)["id"]

    def kill_child(self, child_id: int) -> None:
        """SIGKILL a child of ours (ControlError NotFound if it is not, or no longer, ours)."""
        self.rt.ctl.request("kill_child", child=child_id)

    def child_exits(self) -> list[dict]:
        """The death notices of our children since the last call, oldest first: maps with
        `child` (its domain id), `code` (exit status; negative: killed by that signal;
        None: unknown) and `how` (in words).  Reads the control socket first, so a
        death the supervisor has announced is seen."""
        self.rt.handle_pushes()
        out, self.rt.child_exits = self.rt.child_exits, []
        return out


def import_target(target: str, path: str | None = None):
    """Import `package.module:Class`, also from `path` (the directory `redleaf load`
    ran in) so that a user's own modules load like installed ones."""
    if path and path not in sys.path:
        sys.path.append(path)
    modname, _, clsname = target.partition(":")
    mod = importlib.import_module(modname)
    try:
        return getattr(mod, clsname)
    except AttributeError:
        raise ImportError(f"module {modname!r} has no attribute {clsname!r}") from None


def _install_fault_signals(rt_box: list) -> None:
    def exc(*_):
        raise InjectedFault("fault injected by `redleaf kill --how exception`")

    def ex(*_):
        os._exit(0)

    def hang(*_):
        while True:
            pass

    def term(*_):
        if rt_box:
            rt_box[0].stop = True
        else:
            os._exit(0)

    signal.signal(signal.SIGUSR1, exc)
    signal.signal(signal.SIGUSR2, ex)
    signal.signal(SIG_HANG, hang)
    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def connect_runtime(spec: dict) -> Runtime:
    """Control connection + heap view + runtime for a spawned domain or device."""
    from redleaf.shared_heap import Heap

    domain_id = spec["domain_id"]
    # its own credential, not the instance token: every request speaks for this domain only
    ctl = ControlClient(spec["instance"], cred=spec["cred"], identity=f"d{domain_id}-{os.urandom(8).hex()}".encode())

    def lease(kind: str, count: int):
        return ctl.request("lease", kind=kind, count=count)["items"]

    def register_type(type_id: int, name: str, descr: str):
        ctl.request("register_type", type_id=type_id, type_name=name, descr=descr)

    heap = Heap.open(spec["heap"], domain_id, lease_fn=lease, register_type_fn=register_type)
    ctl.request("hello", pid=os.getpid())
    return Runtime(spec["instance"], domain_id, ctl, heap)


def main(spec: dict) -> int:
    rt_box: list = []
    _install_fault_signals(rt_box)
    name = spec["name"]
    print(f"redleaf: domain {name} (id {spec['domain_id']}, pid {os.getpid()}) starting {spec['target']}", flush=True)
    rt = connect_runtime(spec)
    rt.wake_on_signals()
    if spec.get("watchdog_s"):  # an idle domain must still beat within its watchdog limit
        rt.idle_sleep_ms = max(10, min(rt.idle_sleep_ms, int(spec["watchdog_s"] * 1000 / 4)))
    rt_box.append(rt)
    try:
        cls = import_target(spec["target"], spec.get("path"))
        ctx = DomainContext(rt, name, spec.get("config") or {}, spec.get("uses") or {})
        obj = cls(ctx)
    except BaseException as e:
        traceback.print_exc()
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        try:
            rt.ctl.request("init_failed", error=msg, timeout_s=2.0)
        finally:
            return 78
    if not rt.exports:
        try:
            rt.export(name, obj)
        except Exception:
            pass  # a domain that exports nothing (a pure client of others) is fine
    rt.ctl.request("ready", exports=rt.export_list())
    print(f"redleaf: domain {name} serving {', '.join(sorted({n for n, _i in rt.exports})) or 'nothing'}", flush=True)
    runner = getattr(obj, "run", None)
    try:
        if callable(runner):
            runner()  # a domain with its own loop (it should call ctx.rt.serve_pending())
        else:
            rt.run_forever()
    except BaseException:
        from .proxy import panic

        panic(f"domain {name} main loop raised")
    stop = getattr(obj, "shutdown", None)
    if callable(stop):
        stop()
    rt.close()
    print(f"redleaf: domain {name} stopped", flush=True)
    return 0
