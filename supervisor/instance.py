"""Start and stop a whole instance from Python: what tests and benchmarks use.

`Instance` runs `redleaf up` in the foreground as a child process with a unique name,
waits until it answers, and on `stop()` shuts it down and then verifies and enforces
that nothing is left: no process, no socket, no /dev/shm file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from redleaf.domains.paths import InstancePaths


class Instance:
    created: set[str] = set()  # names this process started (the tests' leak check reads it)

    def __init__(self, manifest: str | None = None, name: str | None = None, env: dict | None = None,
                 cwd: str | None = None):
        self.name = name or f"t{uuid.uuid4().hex[:10]}"
        Instance.created.add(self.name)
        self.paths = InstancePaths(self.name)
        self.manifest_text = manifest
        self.manifest_path: str | None = None
        self.proc: subprocess.Popen | None = None
        self.env = env
        self.cwd = cwd  # where `redleaf up` runs (relative paths in the manifest, e.g. disk images)

    def start(self, timeout: float = 30.0) -> "Instance":
        cmd = [sys.executable, "-m", "redleaf.supervisor.cli", "--name", self.name, "up"]
        if self.manifest_text is not None:
            fd, self.manifest_path = tempfile.mkstemp(prefix="redleaf-manifest-", suffix=".toml")
            os.write(fd, self.manifest_text.encode())
            os.close(fd)
            cmd += ["--manifest", self.manifest_path]
        self.log_path = Path(tempfile.mkstemp(prefix="redleaf-sup-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(self.env or {})}, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        from redleaf.domains.control import ControlClient

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisor exited with {self.proc.returncode}:\n{self.output()}")
            if self.paths.token.exists():
                try:
                    c = ControlClient(self.name, timeout_s=2.0)
                    try:
                        st = c.request("status")
                    finally:
                        c.close()
                    if not any(d["state"] == "starting" for d in st["domains"]):
                        return self
                except Exception:
                    pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"instance {self.name} did not come up in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except Exception:
            return ""

    def request(self, cmd: str, timeout_s: float = 30.0, **fields) -> dict:
        from redleaf.domains.control import ControlClient

        c = ControlClient(self.name, timeout_s=timeout_s)
        try:
            return c.request(cmd, **fields)
        finally:
            c.close()

    def status(self) -> dict:
        return {d["name"]: d for d in self.request("status")["domains"]}

    def wait_state(self, name: str, states, timeout: float = 10.0, pid_not: int | None = None) -> dict:
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status().get(name)
            if last and last["state"] in states and (pid_not is None or last["pid"] != pid_not):
                return last
            time.sleep(0.01)
        raise TimeoutError(f"{name} did not reach {states} in {timeout}s (last: {last})")

    def cpu_usage(self, seconds: float) -> dict[str, dict]:
        """CPU share (percent of one core) and voluntary wake-ups of each of the
        instance's processes (supervisor, zygote, domains, devices) over `seconds`:
        what an instance costs while it waits."""
        import psutil

        sup = psutil.Process(self.request("status")["pid"])
        procs = [sup] + sup.children(recursive=True)

        def sample():
            out = {}
            for p in procs:
                try:
                    t = p.cpu_times()
                    out[p.pid] = (t.user + t.system, p.num_ctx_switches().voluntary, " ".join(p.cmdline()).strip())
                except psutil.Error:
                    pass
            return out
        t0, a = time.monotonic(), sample()
        time.sleep(seconds)
        dt, b = time.monotonic() - t0, sample()
        return {b[pid][2] or str(pid): {"cpu_pct": 100 * (b[pid][0] - a[pid][0]) / dt, "wakes": b[pid][1] - a[pid][1]}
                for pid in a.keys() & b.keys()}

    def attach(self):
        from redleaf.domains import attach

        return attach(self.name)

    def leftovers(self) -> list[str]:
        """What the instance left behind: files and processes."""
        out = []
        if self.paths.heap.exists():
            out.append(str(self.paths.heap))
        if self.paths.root.exists():
            out.append(str(self.paths.root))
        import psutil

        for p in psutil.process_iter(["pid", "cmdline", "environ"]):
            try:
                cl = " ".join(p.info["cmdline"] or [])
            except Exception:
                continue
            if self.name in cl and p.pid != os.getpid():
                out.append(f"process {p.pid}: {cl}")
        return out

    def stop(self, timeout: float = 15.0) -> None:
        from . import stale

        if self.proc is not None and self.proc.poll() is None:
            try:
                self.request("shutdown", timeout_s=3.0)
            except Exception:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            stale.clean_stale(self.name)
        except Exception:
            pass
        if self.manifest_path:
            try:
                os.unlink(self.manifest_path)
            except FileNotFoundError:
                pass
        try:
            self._log.close()
        except Exception:
            pass

    def cleanup_log(self) -> None:
        try:
            os.unlink(self.log_path)
        except Exception:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.cleanup_log()
