"""The report of a campaign: a summary dict (what `--json` prints and report.json
holds), its text form, and the plots written to `--report DIR`.

May call: crashtest.campaign (the record's types), matplotlib (plots only).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def summary(rec) -> dict:
    fired = [f for f in rec.faults if not f.how.startswith("skipped") and "(not fired" not in f.how]
    armed_only = [f for f in rec.faults if "(not fired" in f.how]
    ttr = [f.recovered_s for f in fired if f.recovered_s is not None]
    exp = sum(n for k, n in rec.errors_by_kind.items() if k.endswith("(expected)"))
    unexp = sum(n for k, n in rec.errors_by_kind.items() if k.endswith("(unexpected)"))
    return {
        "options": rec.options,
        "instance": rec.instance,
        "booted": rec.booted,
        "elapsed_s": round(rec.elapsed_s, 3),
        "faults": {"planned": rec.plan_size, "fired": len(fired), "not_fired": len(armed_only),
                   "skipped": len(rec.faults) - len(fired) - len(armed_only),
                   "by_kind": dict(sorted(Counter(f.kind for f in fired).items())),
                   "by_target": dict(sorted(Counter(f.target for f in fired).items()))},
        "recoveries": {"restarted": sum(1 for f in fired if f.restarted),
                       "survived": sum(1 for f in fired if not f.restarted and f.recovered_s is not None),
                       "not_recovered": sum(1 for f in fired if f.recovered_s is None)},
        "time_to_recovery_s": {"count": len(ttr), "median": _pct(ttr, 50), "p99": _pct(ttr, 99),
                               "max": max(ttr) if ttr else None},
        "calls": rec.ops,
        "workload": dict(getattr(rec, "workload_stats", {}) or {}),
        "client_errors": {"expected": exp, "unexpected": unexp, "by_kind": dict(sorted(rec.errors_by_kind.items())),
                          "unexpected_first": [list(e) for e in rec.unexpected_errors]},
        "violations": [dict(asdict(v), replay=v.replay_args()) for v in rec.violations],
        "fault_log": [asdict(f) for f in rec.faults],
    }


def text(s: dict) -> str:
    o = s["options"]
    f = s["faults"]
    t = s["time_to_recovery_s"]
    ms = (lambda v: "-" if v is None else f"{v * 1000:.1f} ms")
    lines = [
        f"crashtest: workload {o['workload']} on instance {s['instance']} ({'booted' if s['booted'] else 'joined'}), "
        + (f"{o['parallel']} campaigns at once, seeds {','.join(map(str, o['seeds']))}" if o.get("parallel")
           else f"seed {o['seed']}") + f", schedule {o['schedule']}" + (f", replay of fault(s) {','.join(map(str, o['replay']))}" if o["replay"] is not None else ""),
        f"  targets {o['targets']!r}, faults {','.join(o['faults'])}, {s['elapsed_s']:.1f}s, "
        f"{s['calls']} workload calls completed",
        f"faults: {f['fired']} fired of {f['planned']} planned ({f['skipped']} skipped, {f['not_fired']} armed "
        f"in a call the workload did not make in time)",
        "  by kind:   " + (", ".join(f"{k} {n}" for k, n in f["by_kind"].items()) or "-"),
        "  by target: " + (", ".join(f"{k} {n}" for k, n in f["by_target"].items()) or "-"),
        f"recoveries: {s['recoveries']['restarted']} restarted, {s['recoveries']['survived']} survived in place, "
        f"{s['recoveries']['not_recovered']} did not recover",
        f"time to recovery: median {ms(t['median'])}, p99 {ms(t['p99'])}, max {ms(t['max'])} ({t['count']} faults)",
        f"client-visible errors: {s['client_errors']['expected']} expected, {s['client_errors']['unexpected']} unexpected"
        + ("" if not s["client_errors"]["by_kind"] else
           " (" + ", ".join(f"{k}: {n}" for k, n in s["client_errors"]["by_kind"].items()) + ")"),
    ]
    if s.get("workload"):
        lines.append("workload: " + ", ".join(f"{k} {n}" for k, n in s["workload"].items()))
    v = s["violations"]
    if not v:
        lines.append("violations: none")
    else:
        lines.append(f"violations: {len(v)}")
        for x in v:
            where = f"fault {x['fault']}" if x["fault"] is not None else "at the end"
            lines.append(f"  - {where} ({x['kind']} -> {x['target']}): {x['what']}")
            lines.append(f"    reproduce: redleaf crashtest --workload {o['workload']} {_plan_args(o)} {x['replay']}")
    return "\n".join(lines)


def _plan_args(o: dict) -> str:
    """The options that shape the plan and its faults, so `--seed S --replay K` fires
    the same fault K the same way."""
    out = [f"--schedule {o['schedule']}", f"--faults {','.join(o['faults'])}", f"--stall-s {o['stall_s']:g}"]
    if o.get("name"):
        out.append(f"--name {o['name']}")
    if o.get("count") is not None:
        out.append(f"--count {o['count']}")
    if o.get("rate") is not None:
        out.append(f"--rate {o['rate']:g}")
    if o.get("duration") is not None:
        out.append(f"--duration {o['duration']:g}")
    if o.get("targets"):
        out.append(f"--targets '{o['targets']}'")
    if o.get("clients"):
        out.append(f"--clients {o['clients']}")  # the same number of client targets to pick among
    return " ".join(out)


def write_dir(rec, s: dict, path: str) -> list[str]:
    """report.json, report.txt and plot.png in `path`; the files written."""
    os.makedirs(path, exist_ok=True)
    out = []
    p = os.path.join(path, "report.json")
    with open(p, "w") as fh:
        json.dump(dict(s, throughput={"bucket_s": rec.bucket_s, "buckets": {str(k): v for k, v in
                                                                            sorted(rec.buckets.items())}}),
                  fh, indent=1)
    out.append(p)
    p = os.path.join(path, "report.txt")
    with open(p, "w") as fh:
        fh.write(text(s) + "\n")
    out.append(p)
    out.append(plot(rec, os.path.join(path, "plot.png")))
    return out


#: up to this many faults, each is a line on the throughput plot; beyond, their rate
MARK_MAX = 300


def plot(rec, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 7))
    if rec.buckets:
        n = max(rec.buckets) + 1
        xs = [i * rec.bucket_s for i in range(n)]
        ys = [rec.buckets.get(i, 0) / rec.bucket_s for i in range(n)]
        a1.plot(xs, ys, lw=0.8, label="workload calls/s")
    # the workload's clock starts just before the campaign's: close enough at this scale
    fired = [f.fired_at for f in rec.faults if not f.how.startswith("skipped") and "(not fired" not in f.how]
    if len(fired) <= MARK_MAX:
        for t in fired:
            a1.axvline(t, color="red", alpha=0.3, lw=0.6)
        a1.set_xlabel("time (s); red: faults")
    else:  # a line a fault would paint the whole plot red: faults per second instead
        w = max(rec.bucket_s, max(fired) / 200)
        counts: dict[int, int] = {}
        for t in fired:
            counts[int(t // w)] = counts.get(int(t // w), 0) + 1
        n = max(counts) + 1
        a3 = a1.twinx()
        a3.plot([i * w for i in range(n)], [counts.get(i, 0) / w for i in range(n)], color="red", lw=0.8,
                alpha=0.7)
        a3.set_ylabel("faults/s", color="red")
        a3.set_ylim(bottom=0)
        a1.set_xlabel(f"time (s); red: faults per second ({len(fired)} in all, {w:.3g} s windows)")
    a1.set_ylabel("calls/s")
    a1.set_title(f"crashtest {rec.options['workload']}: throughput with faults marked")
    ttr = [f.recovered_s * 1000 for f in rec.faults if f.recovered_s is not None and f.restarted]
    a2.hist(ttr or [0], bins=40)
    a2.set_xlabel("time to recovery (ms), faults that restarted their target")
    a2.set_ylabel("faults")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
