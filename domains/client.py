"""attach(): turn any Python process into a client domain of a running instance.

    from redleaf.domains import attach
    with attach("default") as d:
        echo = d.lookup("echo", Echo)
        echo.ping()

The process gets a domain id and its own credential, maps the exchange heap, and is
listed in `redleaf status`.  Attaching proves to the supervisor that the pid it claims
is this process (supervisor/control.py, "attach proof"): the supervisor's nonce is
written into /proc/self/comm for the moment of the `attach` request, then the
process's name is put back.  Its own requests (lookup, lease, ...) then carry the
credential; `request()` of an operator command (status, load, kill, ...) uses the
instance token, as the CLI does.  When it exits, detaches, or is killed, the supervisor reclaims everything
it owned, like any domain (it watches the client's pidfd).
"""

from __future__ import annotations

import os

from .control import ControlClient
from .errors import InterfaceError
from .runtime import Runtime


def _prove_pid(ctl: "ControlClient") -> dict:
    """attach_nonce, the nonce in our comm, attach; our comm is restored whatever happens."""
    pid = os.getpid()
    nonce = ctl.request("attach_nonce", pid=pid)["nonce"]
    with open("/proc/self/comm") as f:
        name = f.read().rstrip("\n")
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(nonce)
        return ctl.request("attach", pid=pid, nonce=nonce)
    finally:
        with open("/proc/self/comm", "w") as f:
            f.write(name)


class Client:
    """A process attached as a client domain."""

    def __init__(self, instance: str = "default", timeout_s: float = 10.0):
        from redleaf.shared_heap import Heap

        self.instance = instance
        # one attach per process, but a unique (and unguessable: nobody can squat it
        # first) identity per attempt, so that a second attach gets the supervisor's
        # clear refusal instead of a silent identity clash
        self.ctl = ControlClient(instance, timeout_s=timeout_s,
                                 identity=f"c{os.getpid()}-{os.urandom(8).hex()}".encode())
        try:
            r = _prove_pid(self.ctl)
        except BaseException:
            self.ctl.close()
            raise
        self.domain_id = r["domain_id"]
        self.ctl.cred = r["cred"]
        ctl = self.ctl

        def lease(kind, count):
            return ctl.request("lease", kind=kind, count=count)["items"]

        def register_type(type_id, name, descr):
            ctl.request("register_type", type_id=type_id, type_name=name, descr=descr)

        self.heap = Heap.open(r["heap"], self.domain_id, lease_fn=lease, register_type_fn=register_type)
        self.rt = Runtime(instance, self.domain_id, ctl, self.heap)
        self._closed = False

    def exports(self) -> dict[str, list[str]]:
        """What the instance exports: {name: ["module.Interface", ...]} (a driver may export
        one name under several interfaces, as nvme0 does BDev and NvmeBDev)."""
        out: dict[str, list[str]] = {}
        for row in self.ctl.request("status")["domains"]:
            for x in row.get("exports") or []:
                out.setdefault(x["name"], []).append(f"{x['module']}.{x['interface']}")
        return out

    def lookup(self, name: str, iface: type | None = None, deadline_s: float | None = None):
        """A proxy to the object exported under `name`. With `iface`, checked against your
        own interface class (the form type checkers follow); without, for the interface
        the exporting domain registered, imported here from its module.  `deadline_s`:
        your own deadline for its calls, when shorter than the interface's."""
        if iface is None:
            iface = self._registered_interface(name)
        return self.rt.lookup(name, iface, deadline_s=deadline_s)

    def _registered_interface(self, name: str) -> type:
        import importlib

        from .interface import spec_of

        found = self.exports()
        if name not in found:
            raise LookupError(f"nothing exports {name!r}; exported: {', '.join(sorted(found)) or 'nothing'}")
        if len(found[name]) > 1:
            raise LookupError(f"{name!r} exports several interfaces ({', '.join(found[name])}); "
                              f"pass the one you want: d.lookup({name!r}, Interface)")
        module, _, cls = found[name][0].rpartition(".")
        try:
            iface = getattr(importlib.import_module(module), cls)
            spec_of(iface)
        except (ImportError, AttributeError, InterfaceError) as e:
            raise InterfaceError(f"{name!r} implements {found[name][0]}, which cannot be imported here "
                                 f"({type(e).__name__}: {e}); pass the interface class yourself") from None
        return iface

    def export(self, name: str, obj, iface: type | None = None) -> None:
        """Export an object from this client; it is served while this client waits in
        a call or runs `serve_forever()`."""
        self.rt.export(name, obj, iface)
        self.ctl.request("ready", exports=self.rt.export_list())

    def serve_forever(self) -> None:
        self.rt.run_forever()

    def request(self, cmd: str, **fields) -> dict:
        """A raw control request (status, load, kill, ...) as this client."""
        return self.ctl.request(cmd, **fields)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.ctl.request("detach", timeout_s=5.0)
        except Exception:
            pass  # the supervisor will notice the exit through the pidfd anyway
        finally:
            self.rt.close()
            try:
                self.heap.close()
            except Exception:
                pass
            self.ctl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def attach(instance: str = "default", timeout_s: float = 10.0) -> Client:
    return Client(instance, timeout_s)
