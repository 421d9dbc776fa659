"""What every workload shares: the Recorder its client loop reports to, and the
Workload base class the campaign drives.

The client loop runs in a thread of the campaign's process; it reports each call
(`rec.call()` as a context manager: its duration against the deadline, its error if
any) and each failed data check (`rec.problem`).  The campaign reads the record
between faults from its own thread: appends and counters only, so the GIL is
enough.

Re-attach: when the campaign kills the supervisor (the `supervisor` fault kind) it
calls `begin_outage()` first, so the kill lands in the middle of the loop's traffic:
whatever the loop raises from then on (its calls fail: the instance is gone) ends
that run of `body` with an error of type SupervisorLost in the record, which the
campaign expects in that wave; once the supervisor is dead, `leave()` makes the
next `gate()` raise SupervisorOutage, for a loop whose calls all failed quietly.
Once the instance is up again, `end_outage()` lets the thread run `body` afresh: it
attaches to the new supervisor under the same instance name, keeping the
workload's own state (what it wrote, what it expects to read).

May call: domains (errors).
"""

from __future__ import annotations

import gc
import threading
import time

#: throughput is counted in buckets of this many seconds
BUCKET_S = 0.1
#: the RPC errors a caller sees when the callee it calls dies, hangs or restarts
OUTAGE_ERRORS = ("DomainCrashed", "DomainUnavailable", "RpcTimeout")


class _Call:
    __slots__ = ("rec", "what", "deadline", "t0", "failed")

    def __init__(self, rec, what, deadline):
        self.rec, self.what, self.deadline = rec, what, deadline
        self.failed = False  # the call raised an RPC error (recorded)

    def __enter__(self):
        self.t0 = time.monotonic()
        self.rec.in_call = (self.what, self.t0, self.deadline)
        return self

    def __exit__(self, et, ev, tb):
        rec = self.rec
        t1 = time.monotonic()
        rec.in_call = None
        took = t1 - self.t0
        if took > self.deadline:
            rec.slow_calls.append((self.what, took, self.deadline))
        if ev is None:
            rec.ok(t1)
            return False
        from redleaf.domains.errors import RpcError

        if isinstance(ev, RpcError):
            self.failed = True
            rec.error(type(ev).__name__, str(ev), t1, self.what)
            return True  # an RPC error is recorded and judged by the campaign, not raised
        return False


class Recorder:
    def __init__(self):
        self.t0 = time.monotonic()
        self.ops = 0
        self.buckets: dict[int, int] = {}
        self.errors: list[tuple[float, str, str, str]] = []  # (time, type, message, the call's `what`)
        self.problems: list[tuple[float, str]] = []  # failed data checks
        self.slow_calls: list[tuple[str, float, float]] = []
        self.in_call: tuple[str, float, float] | None = None
        self.started = threading.Event()  # set at the first call that returns
        self.crashed: str | None = None  # the loop itself died: the traceback's last line

    def call(self, what: str, deadline: float) -> _Call:
        return _Call(self, what, deadline)

    def ok(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        self.ops += 1
        k = int((t - self.t0) / BUCKET_S)
        self.buckets[k] = self.buckets.get(k, 0) + 1
        if not self.started.is_set():
            self.started.set()

    def error(self, kind: str, message: str, t: float | None = None, what: str = "") -> None:
        self.errors.append((time.monotonic() if t is None else t, kind, message, what))

    def problem(self, message: str) -> None:
        self.problems.append((time.monotonic(), message))

    def hung_call(self, now: float, grace_s: float) -> str | None:
        """The call in progress, if it has run past its deadline plus grace."""
        c = self.in_call
        if c is not None and now - c[1] > c[2] + grace_s:
            return f"{c[0]} has not returned after {now - c[1]:.1f}s (deadline {c[2]:g}s): a hung caller"
        return None


class SupervisorOutage(Exception):
    """Raised at the loop's gate while the campaign restarts the supervisor: leave the
    attach, the base class runs `body` again once the instance is back."""


class Workload:
    """A workload: subclass and fill in the class attributes and `body`."""

    name = "?"
    #: the default --targets
    targets = "*"
    #: for in-call faults: the methods the workload's calls reach, by target name
    methods: dict[str, tuple[str, ...]] = {}
    #: the longest call deadline of the workload's calls (for the hung-caller check)
    deadline_s = 10.0
    #: may it run on an instance it did not boot (--name)?  If not, why not
    joinable = True
    joinable_why = ""

    def __init__(self, tmpdir: str):
        self.tmpdir = tmpdir

    def manifest(self) -> str | None:
        """The TOML of the instance it boots (None: it needs --name)."""
        return None

    def body(self, instance: str, rec: Recorder, stop: threading.Event) -> None:
        """The client loop: until `stop` is set, rounds of calls, each round begun
        with `self.gate()` (where the campaign may hold it while it checks)."""
        raise NotImplementedError

    def begin_outage(self) -> None:
        """The supervisor is about to be killed: what the loop raises from now on is
        the outage's, not a crash of the loop."""
        self.back.clear()
        self.outage.set()

    def leave(self, timeout: float) -> bool:
        """The supervisor is dead: leave the attach at the next gate.  False if the
        loop did not leave within `timeout` (a call that never returns)."""
        self.leaving.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.left.wait(0.05) or not self.thread.is_alive():
                return True
        return False

    def end_outage(self) -> None:
        """The instance is up again: run `body` again (it re-attaches)."""
        self.leaving.clear()
        self.outage.clear()
        self.left.clear()
        self.back.set()

    def gate(self) -> None:
        """Between rounds: park here while the campaign checks the invariants.  The
        heap checker reads the ownership table while nothing of ours moves in it (a
        half-done allocation of a running client is not a leak)."""
        if self.leaving.is_set():
            raise SupervisorOutage("the campaign is restarting the supervisor")
        if self.hold.is_set():
            self.parked.set()
            while self.hold.is_set() and not self.stop_event.is_set():
                self.hold_wait.wait(0.1)
            self.parked.clear()

    def pause(self, timeout: float) -> bool:
        """Hold the loop at its next gate; False if it did not get there in time (a
        call that does not return: the campaign reports the hung caller)."""
        self.hold_wait.clear()
        self.hold.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.parked.wait(0.05) or not self.thread.is_alive():
                return True
        return False

    def resume(self) -> None:
        self.hold.clear()
        self.hold_wait.set()

    def expected(self, kind: str, targets: set[str], what: str = "") -> bool:
        """Is an error of type `kind`, raised by the call `what` (as given to
        `rec.call`), expected while `targets` are being faulted?"""
        return False

    def final_problems(self) -> list[str]:
        """Checks after the loop stopped (e.g. re-read everything written)."""
        return []

    def stats(self) -> dict:
        """The workload's own counts for the report (e.g. frames lost), name -> number."""
        return {}

    def close(self) -> None:
        """Release what the workload holds outside the instance (a socket); the
        campaign calls it once, at the end, whatever happened."""

    def methods_for(self, target: str) -> tuple[str, ...]:
        return tuple(self.methods.get(target, ()))

    # -- the thread the campaign starts -----------------------------------------------------
    def start(self, instance: str) -> Recorder:
        self.rec = Recorder()
        self.stop_event = threading.Event()
        self.hold, self.parked, self.hold_wait = threading.Event(), threading.Event(), threading.Event()
        self.outage, self.leaving, self.back = threading.Event(), threading.Event(), threading.Event()
        self.left = threading.Event()  # the loop left the dead instance and waits for the next
        self.runs = 0  # times `body` was started (1 + re-attaches)
        self.thread = threading.Thread(target=self._run, args=(instance,), name=f"workload-{self.name}",
                                       daemon=True)
        self.thread.start()
        return self.rec

    def _run(self, instance: str) -> None:
        import traceback

        try:
            while True:
                self.runs += 1
                try:
                    self.body(instance, self.rec, self.stop_event)
                    if not self.outage.is_set():
                        return
                except BaseException as e:  # noqa: BLE001 - reported as a violation, not lost in a thread
                    if not self.outage.is_set():
                        raise
                    if not isinstance(e, SupervisorOutage):
                        self.rec.error("SupervisorLost", f"{type(e).__name__}: {e}")
                # the supervisor is being restarted: wait for it, then attach again.  The
                # old attach (its heap and channel mappings) hangs in the exception's
                # frame cycles until a cyclic collection: free it now, not some time later
                gc.collect()
                self.left.set()
                while not self.back.wait(0.1):
                    if self.stop_event.is_set():
                        return
        except BaseException as e:  # noqa: BLE001 - reported as a violation, not lost in a thread
            self.rec.crashed = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            self.rec.started.set()  # nobody waits forever for a loop that ended

    def stop(self, timeout: float) -> bool:
        """Stop the loop; False if it did not end within `timeout` (a hung caller)."""
        self.stop_event.set()
        self.resume()
        self.thread.join(timeout)
        return not self.thread.is_alive()
