"""`redleaf bench recovery --driver ixgbe`: RedLeaf's ixgbe recovery experiment.

An l2fwd domain forwards 64-byte frames from the pktgen wire (batch 32) for N
seconds (`--seconds`, default 10) through the shadowed driver.  In one run the
driver domain is killed with SIGKILL once a second; the other run is the same
without crashes.  Both instances are up together and take turns in one-second
slices (the crashing one's driver is killed half-way through each of its slices),
so that the shared machine's changing load hits both runs alike, as in the NVMe
experiment; a rate is per second of a run's own forwarding time.  The same pair
of runs without the shadow shows what the shadow hides: there every crash reaches
the forwarder as an error.

Rows: forwarding rate of each run and the crash/no-crash ratio, client-visible
errors (calls that failed in the forwarder; 0 with the shadow), kills, and the
median time from a kill to the first packet forwarded after it (from the
forwarder's timeline of packets per 1 ms bin: resolution 1-2 ms).  `--plot FILE.png`
draws throughput over time with the kills marked.

`--colocated` adds the pair with the forwarder in the shadow's group and the driver
in a process of its own (RedLeaf's placement of a shadow: trusted code beside its
client), rows `redleaf-colocated` and `redleaf-colocated-kill1s`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time

import numpy as np

from redleaf.bench import row

B = "recovery"
BATCH = 32

_MANIFEST = """
[heap]
size = "128MiB"
records = 131072

[supervisor]
watchdog_s = 10.0

[[device]]
name = "ixgbe0-dev"
target = "redleaf.drivers.ixgbe.device:IxgbeDevice"
config = {{ wire = "pktgen", frame_size = 60 }}

[[domain]]
name = "ixgbe0"
target = "redleaf.drivers.ixgbe.domain:IxgbeNetDriver"
restart = "permanent"
max_restarts = 1000
period_s = 10.0
backoff_s = 0.005
backoff_max_s = 0.02
config = {{ device = "ixgbe0-dev" }}
shadow = {shadow}
{driver_group}
[[domain]]
name = "app"
target = "redleaf.drivers.ixgbe.l2fwd_domain:L2Fwd"
uses = {{ net = "ixgbe0" }}
config = {{ packets = 2048 }}
{app_group}"""


def manifest(shadow: bool, colocated: bool = False) -> str:
    """With `shadow = true` the driver runs as `ixgbe0.driver` behind its shadow.
    `colocated` puts the shadow and the forwarder in group "net" and the driver in a
    process of its own (`driver_group = ""`), so a SIGKILL of the driver leaves the
    forwarder's shadow alive beside it, as in RedLeaf."""
    if colocated and not shadow:
        raise ValueError("the co-located recovery configuration is the shadow beside its client: use shadow=True")
    return _MANIFEST.format(shadow="true" if shadow else "false",
                            driver_group='group = "net"\ndriver_group = ""\n' if colocated else "",
                            app_group='group = "net"\n' if colocated else "")


def recovery_times_ms(kills: list[tuple[int, int]], start: int, bin_ns: int, bins: np.ndarray) -> list[float]:
    """For each kill (requested at t0, request answered at t1: the driver is dead by
    then): ms from t0 to the first bin with forwarded packets that begins at least
    one bin after t1.  Every forwarding step calls the driver twice, so a step that
    completes after the death went through the restarted driver."""
    out = []
    for t0, t1 in kills:
        b = -(-(t1 - start) // bin_ns) + 1
        nz = np.flatnonzero(bins[b:]) if b < bins.size else []
        if len(nz):
            out.append((start + (b + int(nz[0])) * bin_ns - t0) / 1e6)
    return out


SLICE_S = 1.0  # each run's turn; the crashing run's driver is killed half-way through


class _Run:
    """One instance of a pair and what its slices forwarded: counts, wall time,
    errors, and per slice its timeline (packets per bin) and its kills (monotonic ns
    around each kill request), for the recovery times and the plot."""

    def __init__(self, stack, shadow: bool, colocated: bool, crash: bool, batch: int):
        from redleaf.drivers.net import NetApp
        from redleaf.supervisor.instance import Instance

        self.inst = stack.enter_context(Instance(manifest(shadow, colocated)))
        self.app = stack.enter_context(self.inst.attach()).lookup("app", NetApp)
        self.app.run_app("fwd", batch, 0.3, 0)  # warm up
        self.victim = ("ixgbe0.driver" if shadow else "ixgbe0") if crash else None
        self.batch = batch
        self.n = self.errors = 0
        self.wall = 0  # ns
        self.slices: list[tuple[int, int, np.ndarray, list]] = []  # (start, bin, bins, kills in it)

    def turn(self) -> None:
        from redleaf.drivers.ixgbe.app import decode_timeline

        timer, mine = None, []
        if self.victim is not None:
            def kill():
                t = time.monotonic_ns()
                try:
                    self.inst.request("kill", name=self.victim, how="sigkill")
                    mine.append((t, time.monotonic_ns()))
                except Exception:
                    pass  # still restarting from the previous kill
            timer = threading.Timer(SLICE_S / 2, kill)
            timer.start()
        try:
            n, _cpu, wall, errors = self.app.run_app("fwd", self.batch, SLICE_S, 0)
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
        self.n += n
        self.wall += wall
        self.errors += errors
        start, bin_ns, bins = decode_timeline(self.app.timeline())
        self.slices.append((start, bin_ns, bins.copy(), mine))

    def result(self) -> dict:
        rec = [ms for start, bin_ns, bins, kills in self.slices
               for ms in recovery_times_ms(kills, start, bin_ns, bins)]
        # the slices end to end, for the plot: each run's own forwarding time
        bin_ns = self.slices[0][1] if self.slices else 1_000_000
        bins = np.concatenate([b for _s, _b, b, _k in self.slices]) if self.slices else np.zeros(0, np.int32)
        kills, off = [], 0
        for start, b_ns, b, ks in self.slices:
            kills += [(off + (t0 - start), off + (t1 - start)) for t0, t1 in ks]
            off += b.size * b_ns
        return {"mpps": self.n / self.wall * 1e3 if self.wall else 0.0, "errors": self.errors,
                "kills": [k for _s, _b, _bins, ks in self.slices for k in ks],
                "start": 0, "bin_ns": bin_ns, "bins": bins, "plot_kills": kills, "recovery_ms": rec}


def _pair(shadow: bool, seconds: float, batch: int, colocated: bool = False) -> tuple[dict, dict]:
    """The crash-free run and the run killed once a second, taking turns."""
    with contextlib.ExitStack() as stack:
        calm = _Run(stack, shadow, colocated, False, batch)
        crash = _Run(stack, shadow, colocated, True, batch)
        for _ in range(max(1, round(seconds / SLICE_S))):
            calm.turn()
            crash.turn()
        return calm.result(), crash.result()


def plot(path: str, runs: dict, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for label, r in runs.items():
        w = max(1, int(20_000_000 // r["bin_ns"]))          # 20 ms windows
        bins = r["bins"][: len(r["bins"]) // w * w].reshape(-1, w).sum(axis=1)
        t = np.arange(bins.size) * w * r["bin_ns"] / 1e9
        ax.plot(t, bins / (w * r["bin_ns"] / 1e9) / 1e6, label=label, lw=1)
        for k, _k1 in r["plot_kills"]:
            ax.axvline((k - r["start"]) / 1e9, color="red", lw=0.6, ls=":" if "no shadow" in label else "--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("forwarded (Mpps, 20 ms windows)")
    ax.set_title(f"ixgbe l2fwd (batch {BATCH}), driver killed once a second (red lines)")
    ax.set_xlim(0, seconds)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench recovery --driver ixgbe")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    ap.add_argument("--quick", action="store_true", help="3-second runs")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--plot", metavar="FILE.png", help="plot throughput over time with the kills marked")
    ap.add_argument("--no-unshadowed", action="store_true", help="skip the runs without the shadow")
    ap.add_argument("--colocated", action="store_true",
                    help="also the redleaf-colocated pair: the forwarder in the shadow's group, the driver apart")
    a = ap.parse_args(argv)
    seconds = 3.0 if a.quick else a.seconds
    if seconds < 2.0:
        ap.error("--seconds must be at least 2 (kills come once a second)")
    rows: list[dict] = []
    runs: dict[str, dict] = {}
    configs = ([(True, False, "redleaf-shadow")] + ([] if a.no_unshadowed else [(False, False, "redleaf")])
               + ([(True, True, "redleaf-colocated")] if a.colocated else []))
    for shadow, colocated, system in configs:
        calm, crash = _pair(shadow, seconds, a.batch, colocated)
        runs[f"{system}, no crashes"] = calm
        runs[f"{system}, killed 1/s" + ("" if shadow else " (no shadow)")] = crash
        case = f"fwd-b{a.batch}"
        rows.append(row(B, case, system, "rate", calm["mpps"], "Mpps"))
        rows.append(row(B, case, f"{system}-kill1s", "rate", crash["mpps"], "Mpps"))
        if calm["mpps"]:
            rows.append(row(B, case, f"{system}-kill1s/{system}", "ratio", crash["mpps"] / calm["mpps"], "x"))
        rows.append(row(B, case, f"{system}-kill1s", "count", len(crash["kills"]), "kills"))
        rows.append(row(B, case, f"{system}-kill1s", "errors", crash["errors"], "calls"))
        rows.append(row(B, case, system, "errors", calm["errors"], "calls"))
        rec = crash["recovery_ms"]
        if rec:
            rows.append(row(B, f"{case}-kill-to-first-packet", f"{system}-kill1s", "median",
                            statistics.median(rec), "ms"))
            rows.append(row(B, f"{case}-kill-to-first-packet", f"{system}-kill1s", "p99",
                            sorted(rec)[min(len(rec) - 1, int(len(rec) * 0.99))], "ms"))
    if a.plot:
        plot(a.plot, runs, seconds)
    return rows
