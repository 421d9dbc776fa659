"""`redleaf bench recovery --driver nvme|ixgbe`: RedLeaf's recovery experiment.

A workload runs for a while with the driver killed once a second, beside the same
run without crashes; the rows give the throughput ratio, the client-visible errors
and the time from a kill to the first completed request.  Each driver's experiment
lives in its own module (bench/recovery_<driver>.py, and bench/recovery_fs.py for
`--driver nvme --fs`: the same on Rv6's file system); this one only dispatches.
"""

from __future__ import annotations

import argparse
import importlib

DRIVERS = ("nvme", "ixgbe")


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench recovery", add_help=True)
    ap.add_argument("--driver", choices=DRIVERS, required=True,
                    help="which driver to crash under load")
    ap.add_argument("--fs", action="store_true",
                    help="with --driver nvme: the workload is file I/O on Rv6's fs above the driver")
    args, rest = ap.parse_known_args(argv)
    if args.fs and args.driver != "nvme":
        ap.error("--fs runs on the NVMe driver: use --driver nvme --fs")
    mod = importlib.import_module("redleaf.bench.recovery_fs" if args.fs else f"redleaf.bench.recovery_{args.driver}")
    return mod.run(rest)
