"""`--parallel N`: one campaign split over N instances run at once, one report.

A campaign is latency-bound (each wave waits for its targets to come back), so a
long soak goes N times faster as N campaigns side by side, each on an instance of
its own: child K runs the same options with seed S+K and its share of the count,
in a process of its own (`python -m redleaf.crashtest.cli ...`), and writes
its own report, plot and progress log under DIR/seed-<S+K>.  The parent merges the
children's summaries: counts add up, the time-to-recovery distribution and the
throughput are recomputed from their fault logs and buckets, and every violation
keeps the seed of the child that found it, so its `--seed S --replay K` reproduces
it alone.

May call: crashtest.report (text and plot of the merged summary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

from . import report

POLL_S = 2.0


def child_argv(args, seed: int, count: int, outdir: str) -> list[str]:
    """The child's command line: the parent's resolved options (a preset already
    applied), with its own seed, count and report directory."""
    out = ["--workload", args.workload or "echo", "--seed", str(seed), "--count", str(count),
           "--report", outdir]
    for flag, v in (("--targets", args.targets), ("--faults", args.faults), ("--schedule", args.schedule),
                    ("--rate", args.rate), ("--duration", args.duration), ("--stall-s", args.stall_s)):
        if v is not None:
            out += [flag, str(v)]
    return out


def shares(total: int, n: int) -> list[int]:
    """`total` faults over `n` children, as even as integers allow."""
    base = total // n
    return [base + (1 if k < total % n else 0) for k in range(n)]


def run(args, n: int, total: int, outdir: str) -> int:
    """Run the children, merge, print the merged report; exit status 1 if any
    violation (or a child failed to report), else 0."""
    os.makedirs(outdir, exist_ok=True)
    seed, quiet = args.seed, args.quiet or args.json
    kids = []
    for k, count in enumerate(shares(total, n)):
        s = seed + k
        d = os.path.join(outdir, f"seed-{s}")
        os.makedirs(d, exist_ok=True)
        cmd = [sys.executable, "-m", "redleaf.crashtest.cli", *child_argv(args, s, count, d)]
        out = open(os.path.join(d, "stdout.txt"), "w")
        err = open(os.path.join(d, "progress.log"), "w")
        kids.append(SimpleNamespace(seed=s, count=count, dir=d, out=out, err=err,
                                    proc=subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=_die_with_parent)))
    try:
        t0 = time.monotonic()
        while any(k.proc.poll() is None for k in kids):
            time.sleep(POLL_S)  # a progress display's pace, not a synchronisation
            if not quiet:
                done = sum(_faults_logged(k) for k in kids)
                print(f"crashtest --parallel {n}: {done}/{total} faults, {time.monotonic() - t0:.0f}s",
                      file=sys.stderr, flush=True)
    finally:
        for k in kids:
            if k.proc.poll() is None:
                k.proc.terminate()  # interrupted: each child brings its instance down
        for k in kids:
            try:
                k.proc.wait(60)
            except subprocess.TimeoutExpired:
                k.proc.kill()
                k.proc.wait()
            k.out.close()
            k.err.close()
    summaries, problems = [], []
    for k in kids:
        try:
            with open(os.path.join(k.dir, "report.json")) as fh:
                summaries.append(json.load(fh))
        except (OSError, ValueError) as e:
            problems.append(f"child with seed {k.seed} (exit {k.proc.returncode}) wrote no report ({e}); "
                            f"see {os.path.join(k.dir, 'progress.log')}")
    s = merge(summaries, n)
    for p in problems:
        s["violations"].append({"seed": None, "fault": None, "kind": "-", "target": "-", "what": p, "wave": [],
                                "replay": ""})
    with open(os.path.join(outdir, "report.json"), "w") as fh:
        json.dump(s, fh, indent=1)
    txt = report.text(s)
    with open(os.path.join(outdir, "report.txt"), "w") as fh:
        fh.write(txt + "\n")
    s["report_files"] = [os.path.join(outdir, "report.json"), os.path.join(outdir, "report.txt"),
                         plot(s, os.path.join(outdir, "plot.png"))]
    print(json.dumps({k: v for k, v in s.items() if k != "throughput"}, default=str)
          if args.json else txt)
    return 1 if s["violations"] else 0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG),
    so a killed soak leaves no campaign, hence no instance, running."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _faults_logged(kid) -> int:
    try:
        with open(kid.err.name, "rb") as fh:
            return fh.read().count(b"\n  fault ")
    except OSError:
        return 0


def merge(summaries: list[dict], n: int) -> dict:
    """One summary from the children's (report.summary's shape, plus `parallel`)."""
    log = [dict(f, seed=s["options"]["seed"]) for s in summaries for f in s["fault_log"]]
    fired = [f for f in log if not f["how"].startswith("skipped") and "(not fired" not in f["how"]]
    ttr = [f["recovered_s"] for f in fired if f["recovered_s"] is not None]

    def total(*path):
        out = 0
        for s in summaries:
            v = s
            for p in path:
                v = v[p]
            out += v
        return out

    def counts(*path):
        out: dict = {}
        for s in summaries:
            v = s
            for p in path:
                v = v[p]
            for k, x in v.items():
                out[k] = out.get(k, 0) + x
        return dict(sorted(out.items()))

    buckets: dict = {}
    bucket_s = 0.1
    for s in summaries:
        th = s.get("throughput", {})
        bucket_s = th.get("bucket_s", bucket_s)
        for k, v in th.get("buckets", {}).items():
            buckets[k] = buckets.get(k, 0) + v
    first = summaries[0]["options"] if summaries else {}
    o = dict(first, parallel=n, seeds=[s["options"]["seed"] for s in summaries])
    return {
        "options": o,
        "instance": ", ".join(s["instance"] for s in summaries),
        "booted": all(s["booted"] for s in summaries) if summaries else False,
        "elapsed_s": max((s["elapsed_s"] for s in summaries), default=0.0),
        "faults": {"planned": total("faults", "planned"), "fired": len(fired),
                   "not_fired": total("faults", "not_fired"), "skipped": total("faults", "skipped"),
                   "by_kind": counts("faults", "by_kind"), "by_target": counts("faults", "by_target")},
        "recoveries": {k: total("recoveries", k) for k in ("restarted", "survived", "not_recovered")},
        "time_to_recovery_s": {"count": len(ttr), "median": report._pct(ttr, 50), "p99": report._pct(ttr, 99),
                               "max": max(ttr) if ttr else None},
        "calls": total("calls"),
        "client_errors": {"expected": total("client_errors", "expected"),
                          "unexpected": total("client_errors", "unexpected"),
                          "by_kind": counts("client_errors", "by_kind"),
                          "unexpected_first": [e for s in summaries for e in s["client_errors"]["unexpected_first"]]},
        "violations": [v for s in summaries for v in s["violations"]],
        "fault_log": log,
        "throughput": {"bucket_s": bucket_s, "buckets": buckets},
    }


def plot(s: dict, path: str) -> str:
    """The merged plot: every child's calls per second summed, faults marked, and the
    recovery-time histogram (report.plot on a record rebuilt from the summary)."""
    th = s["throughput"]
    rec = SimpleNamespace(
        bucket_s=th["bucket_s"], buckets={int(k): v for k, v in th["buckets"].items()},
        options=s["options"],
        faults=[SimpleNamespace(**{k: f[k] for k in ("how", "fired_at", "recovered_s", "restarted")})
                for f in s["fault_log"]])
    return report.plot(rec, path)
