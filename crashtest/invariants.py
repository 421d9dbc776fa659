"""What must hold after every fault (once its targets are back) and at the end of a
campaign: pure checks of the snapshots the campaign takes (a `status` reply, a `heap`
reply, the workload's record), each returning the problems it finds as sentences.
No I/O here: the campaign (campaign.py) takes the snapshots.

May call: nothing of ours.
"""

from __future__ import annotations

import fnmatch

SUPERVISOR_ID = 1  # the heap's owner id for the supervisor's own objects (supervisor/table.py)
#: states of an entry still on its way back from a fault
UNSETTLED = ("starting", "crashed", "backoff", "stopping")


def matching_targets(rows: list[dict], patterns: str) -> list[str]:
    """Names of running domains and devices matching any of the comma-separated globs.
    Attached clients are never targets (the campaign's own workload is one)."""
    globs = [p.strip() for p in patterns.split(",") if p.strip()] or ["*"]
    return sorted(r["name"] for r in rows
                  if r["kind"] in ("domain", "device") and r["state"] == "running" and r.get("pid")
                  and any(fnmatch.fnmatchcase(r["name"], g) for g in globs))


def settled(rows: list[dict]) -> bool:
    """Every entry is running (or stopped on purpose, or failed: a verdict, not a wait)."""
    return not any(r["state"] in UNSETTLED for r in rows)


def recovery_problems(rows: list[dict], target: str) -> list[str]:
    """The target of a fault, once everything settled: running again, not given up on
    by its restart policy."""
    row = next((r for r in rows if r["name"] == target), None)
    if row is None:
        return [f"{target} is gone from the domain table after the fault"]
    if row["state"] != "running":
        return [f"{target} is {row['state']} after the fault, not running"
                + (f" ({row['reason']})" if row.get("reason") else "")]
    return []


def failed_entries(rows: list[dict]) -> list[str]:
    return [f"{r['name']} is failed ({r.get('reason') or 'restart intensity exceeded'})"
            for r in rows if r["state"] == "failed"]


def heap_problems(heap_reply: dict, rows: list[dict]) -> list[str]:
    """`heap --check` clean, and no object owned by a domain the table does not have."""
    out = [f"heap check: {v}" for v in heap_reply.get("violations", [])]
    live = {r["id"] for r in rows if r.get("id") and r["state"] in ("running", "starting", "stopping")}
    live.add(SUPERVISOR_ID)
    for did, d in heap_reply.get("stats", {}).get("domains", {}).items():
        if int(did) not in live and d.get("objects", 0):
            out.append(f"{d['objects']} heap object(s) ({d.get('bytes', 0)} bytes) owned by domain {did}, "
                       f"which is not alive")
    return out


def deadline_problems(slow_calls: list[tuple[str, float, float]], grace_s: float) -> list[str]:
    """Calls that took longer than their deadline plus `grace_s`: a caller left hanging.
    `slow_calls` holds (what, seconds taken, deadline)."""
    return [f"{what} took {took:.1f}s, past its {deadline:g}s deadline (+{grace_s:g}s grace): a hung caller"
            for what, took, deadline in slow_calls if took > deadline + grace_s]


def leftover_problems(leftovers: list[str]) -> list[str]:
    return [f"left behind after down: {x}" for x in leftovers]
