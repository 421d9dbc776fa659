"""`redleaf bench ixgbe`: RedLeaf's ixgbe experiments on the emulated 82599.

RX, TX and forwarding rates (Mpps) with 64-byte frames (60 bytes + FCS) at batch 1,
32 and 256, traffic from the `pktgen` wire (a MoonGen-like generator and counting
sink inside the device process), for RedLeaf's configurations:

  redleaf-indriver  the application runs inside the driver domain (plain calls)
  redleaf           the application is a domain of its own: every submit_and_poll
                    crosses one domain boundary (two deques moved each way)
  redleaf-shadow    as `redleaf`, with the shadow in between (two boundaries)
  redleaf-nullnet   as `redleaf`, against the software nullnet driver (no device):
                    the cost of crossing and of the batch bookkeeping alone
  redleaf-colocated as `redleaf`, with the application in the driver's group
                    (DESIGN §7a): the same proxies and deque moves, no process hop

plus the driver domain's CPU time per packet, the published figures of RedLeaf and
of the ixy Python driver (labelled `published-*`: quoted, not measured here; the
case names the figure's batch size and the note its hardware), and ratios against
the targets: forwarding across a boundary at batch 256 >= 10x ixy Python at batch
256 (0.16 Mpps); crossing overhead at batch 256 <= 10 %.  A ratio against a
published figure always divides our rate at a batch size by the figure for that
same batch size (a larger batch amortises more per-batch work, on either side).

Each configuration runs in its own instance, so that one device process does not
steal the CPU from another configuration's measurement.  Within the first instance
the in-driver and cross-domain runs alternate (`--reps` runs each, median
reported), so that a change in the machine's load hits both configurations.
"""

from __future__ import annotations

import argparse
import statistics

from redleaf.bench import published, row

B = "ixgbe"
BATCHES = (1, 32, 256)
MODES = ("rx", "tx", "fwd")
# Whose figure, measured on what: the table's note column.
_IXY_HW = "ixy.py, Emmerich et al. ANCS'19; 64 B fwd on one 3.3 GHz core, real Intel X520"
_REDLEAF_HW = "RedLeaf OSDI'20; 64 B, one core of a Xeon E5-2660 v3 2.6 GHz (CloudLab c220g2), real Intel 82599"
PUBLISHED = [  # (system, case, Mpps, note): figures from papers, not measured here
    ("published-ixy-python", "fwd-b32", 0.14, _IXY_HW),
    ("published-ixy-python", "fwd-b256", 0.16, _IXY_HW),
    ("published-redleaf", "fwd-b32", 14.2, _REDLEAF_HW),
]


def published_rows(rate: dict[tuple[str, str], float]) -> list[dict]:
    """The published figures' rows, and our forwarding rate across a boundary
    ("redleaf") divided by each of them at the figure's own batch size.  `rate` maps
    (system, case) to Mpps; the figures are added to it."""
    rows = []
    for system, case, v, note in PUBLISHED:
        rows.append(published(B, case, system, "rate", v, "Mpps", note))
        rate[(system, case)] = v
    for system, case, v, _note in PUBLISHED:
        for mine in ("redleaf", "redleaf-colocated"):
            ours = rate.get((mine, case))
            if ours is not None:
                rows.append(row(B, case, f"{mine}/{system}", "ratio", ours / v, "x"))
    return rows

#: the driver domain plus the packet application inside it (the production driver
#: exports only Net)
_INDRIVER = "redleaf.drivers.ixgbe.pktapp:InDriverPktApp"

_HEAP = """
[heap]
size = "192MiB"
records = 131072

[supervisor]
watchdog_s = 10.0
"""

_DEVICE = """
[[device]]
name = "ixgbe0-dev"
target = "redleaf.drivers.ixgbe.device:IxgbeDevice"
config = { wire = "pktgen", frame_size = 60 }
"""


def _driver(name: str, shadow: bool = False, target: str = "redleaf.drivers.ixgbe.domain:IxgbeNetDriver") -> str:
    return f"""
[[domain]]
name = "{name}"
target = "{target}"
backoff_s = 0.01
backoff_max_s = 0.05
max_restarts = 1000
shadow = {"true" if shadow else "false"}
config = {{ device = "ixgbe0-dev" }}
"""


def _app(name: str, net: str) -> str:
    return f"""
[[domain]]
name = "{name}"
target = "redleaf.drivers.ixgbe.l2fwd_domain:L2Fwd"
uses = {{ net = "{net}" }}
config = {{ packets = 2048 }}
"""


def manifest(config: str) -> str:
    """The manifest of one benchmark configuration ("plain", "shadow", "nullnet")."""
    if config == "plain":
        # the driver with the in-driver application (its NetApp), for redleaf-indriver
        return _HEAP + _DEVICE + _driver("ixgbe0", target=_INDRIVER) + _app("app", "ixgbe0")
    if config == "shadow":  # the driver runs as ixgbe0.driver behind its shadow
        return _HEAP + _DEVICE + _driver("ixgbe0", shadow=True) + _app("app", "ixgbe0")
    if config == "colocated":  # the application in the driver's group (each entry's last table)
        return (_HEAP + _DEVICE + _driver("ixgbe0") + 'group = "net"\n' + _app("app", "ixgbe0")
                + 'group = "net"\n')
    if config == "nullnet":
        return _HEAP + """
[[domain]]
name = "nullnet"
target = "redleaf.drivers.ixgbe.nullnet:NullNetDomain"
""" + _app("app", "nullnet")
    raise ValueError(config)


def _measure(app, mode: str, batch: int, seconds: float, net=None) -> tuple[float, float | None, int]:
    """(Mpps, driver CPU us/packet or None, packets) of one run_app."""
    s0 = net.stats() if net is not None else None
    n, cpu_ns, wall_ns, _errors = app.run_app(mode, batch, seconds, 0)
    cpu = None
    if net is not None and n:
        cpu = (int(net.stats()["cpu_ns"]) - int(s0["cpu_ns"])) / n / 1e3
    elif n:
        cpu = cpu_ns / n / 1e3
    return (n / wall_ns * 1e3 if wall_ns else 0.0), cpu, n


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench ixgbe")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--reps", type=int, default=4,
                    help="split each measurement into this many runs, alternating the in-driver and "
                         "cross-domain configurations, and report the median (noise on a busy machine "
                         "then hits both alike)")
    ap.add_argument("--quick", action="store_true", help="0.3 s per measurement, 1 run")
    a = ap.parse_args(argv)
    secs = 0.3 if a.quick else a.seconds
    reps = 1 if a.quick else max(1, a.reps)

    from redleaf.drivers.net import Net, NetApp
    from redleaf.supervisor.instance import Instance

    rows: list[dict] = []
    rate: dict[tuple[str, str], float] = {}

    def add_rate(system, mode, batch, mpps):
        case = f"{mode}-b{batch}"
        rate[(system, case)] = mpps
        rows.append(row(B, case, system, "rate", mpps, "Mpps"))

    def add_cpu(system, mode, batch, us):
        if us is not None:
            rows.append(row(B, f"{mode}-b{batch}-driver-cpu", system, "mean", us, "us"))

    for config in ("plain", "colocated", "shadow", "nullnet"):
        with Instance(manifest(config)) as inst, inst.attach() as c:
            app = c.lookup("app", NetApp)
            if config == "plain":
                drv_app = c.lookup("ixgbe0", NetApp)
                drv_net = c.lookup("ixgbe0", Net)
            net = c.lookup("nullnet" if config == "nullnet" else "ixgbe0", Net)
            system = {"plain": "redleaf", "shadow": "redleaf-shadow", "nullnet": "redleaf-nullnet",
                      "colocated": "redleaf-colocated"}[config]
            app.run_app("fwd", 32, min(secs, 0.2), 0)   # warm up: first allocations, page faults
            for mode in MODES:
                for batch in BATCHES:
                    runs = [("redleaf-indriver", drv_app, None), (system, app, drv_net)] if config == "plain" \
                        else [(system, app, None)]
                    got: dict[str, list] = {name: [] for name, _a, _n in runs}
                    for _ in range(reps):
                        for name, target, stats_of in runs:
                            got[name].append(_measure(target, mode, batch, secs / reps, stats_of))
                    for name, xs in got.items():
                        add_rate(name, mode, batch, statistics.median(x[0] for x in xs))
                        if config == "plain":
                            cpus = [x[1] for x in xs if x[1] is not None]
                            add_cpu(name, mode, batch, statistics.median(cpus) if cpus else None)
            del net

    # target: forwarding across a boundary at batch 256 >= 10x ixy Python at batch 256
    rows += published_rows(rate)
    # target: crossing overhead at batch 256 <= 10 % (1 - across / in-driver)
    for mode in MODES:
        for batch in (32, 256):
            case = f"{mode}-b{batch}"
            a_, b_ = rate.get(("redleaf", case)), rate.get(("redleaf-indriver", case))
            if a_ is not None and b_:
                rows.append(row(B, f"{case}-crossing-overhead", "redleaf/redleaf-indriver", "ratio",
                                100.0 * (1.0 - a_ / b_), "%"))
            s_ = rate.get(("redleaf-shadow", case))
            if s_ is not None and a_:
                rows.append(row(B, f"{case}-shadow-overhead", "redleaf-shadow/redleaf", "ratio",
                                100.0 * (1.0 - s_ / a_), "%"))
    return rows
