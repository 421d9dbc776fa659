"""Asking domain code a question without running it in the supervisor.

Owns: the shadow probe, i.e. "which shadow does the driver class `target` name in
its SHADOW attribute?".  Answering means importing the target, and importing is
running domain code (a module may call os._exit, sleep, or crash at import), so
it happens in a child process only: the zygote forks one for `load --shadow`
(asynchronously, see zlink.py), and `resolve_shadow` forks one for a manifest
being parsed before the supervisor starts.  Calls only domains.host.import_target,
in the child.
"""

from __future__ import annotations

import os
import select
import signal
import time

import msgpack

#: an import that takes longer than this is treated as hung
PROBE_TIMEOUT_S = 10.0


class ProbeError(RuntimeError):
    """The target could not be imported, or did not answer, in its probe process."""


def probe_target(target: str, path: str | None) -> dict:
    """In the probe process: import `target`; {"shadow": str|None} or {"error": str}."""
    try:
        from redleaf.domains.host import import_target

        cls = import_target(target, path)
        shadow = getattr(cls, "SHADOW", None)
        return {"shadow": shadow if isinstance(shadow, str) else None}
    except BaseException as e:  # anything the import raises is the answer
        return {"error": f"{type(e).__name__}: {e}".splitlines()[0][:500]}


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def resolve_shadow(target: str, path: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Synchronously probe `target` in a forked child; its SHADOW, or None if it names none.

    Raises ProbeError if the import fails, kills the child, or outlasts timeout_s."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setpgid(0, 0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.write(w, msgpack.packb(probe_target(target, path)))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # it already did, or already exited
    data = b""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeError(f"importing {target} did not finish within {timeout_s:g}s")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(r)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _, status = os.waitpid(pid, 0)
    if not data:
        raise ProbeError(f"importing {target} {describe_exit(os.waitstatus_to_exitcode(status))}")
    result = msgpack.unpackb(data, raw=False)
    if "error" in result:
        raise ProbeError(f"importing {target} failed: {result['error']}")
    return result["shadow"]
