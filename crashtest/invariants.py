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


def matching_targets(rows: list[dict], patterns: str, clients=frozenset()) -> list[str]:
    """Names of running domains and devices matching any of the comma-separated globs,
    and of the attached clients named in `clients` (the campaign's extra clients) that
    match.  No other client is a target: the campaign's own workload is one."""
    globs = [p.strip() for p in patterns.split(",") if p.strip()] or ["*"]
    return sorted(r["name"] for r in rows
                  if (r["kind"] in ("domain", "device") or (r["kind"] == "client" and r["name"] in clients))
                  and r["state"] == "running" and r.get("pid")
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


#: channels one caller may hold to one callee at once (a Link each: a domain may look
#: the same name up more than once, or two names of one domain)
MAX_CHANNELS_PER_PAIR = 4


def _live_ids(rows: list[dict]) -> set[int]:
    return {r["id"] for r in rows if r.get("id") and r["state"] in ("running", "starting", "stopping")}


def channel_problems(heap_reply: dict, rows: list[dict], per_pair: int = MAX_CHANNELS_PER_PAIR) -> list[str]:
    """No leaked channel, from `heap --check`'s `channels` and `leftovers` (supervisor
    /control.py) against the table's rows:

    - no channel keeps an end of a domain that is not alive (its death releases it);
    - no channel with no end left (nothing can free it any more: the supervisor
      settles deferred work before it answers a check);
    - a channel whose other party died is being torn down (the live party closes it
      at its next call): at most `per_pair` of them per live party and peer it could
      have had, like the open ones per live pair;
    - the supervisor holds exactly the memfds its records say (an fd for each record
      whose segment is not let go yet) and maps no more segments than it has records;
    - no doorbell of a dead domain, no /dev/shm file of the instance but its heap."""
    ch = heap_reply.get("channels")
    if ch is None:
        return ["heap --check did not report the channel registry (a supervisor without it cannot be checked)"]
    live = _live_ids(rows)
    out = []
    pairs: dict[tuple[int, int], int] = {}
    stale: dict[int, int] = {}
    for c in ch.get("channels", []):
        cid, caller, callee, ends = c["id"], c["caller"], c["callee"], set(c["ends"])
        for d in sorted(ends - live):
            out.append(f"channel {cid} ({caller}->{callee}) still holds an end of domain {d}, which is not alive")
        if not ends:
            out.append(f"channel {cid} ({caller}->{callee}) has no end left but was not freed"
                       + (f" ({c['deferred']} deferred slot(s))" if c.get("deferred") else "")
                       + (" (a sweep pending)" if c.get("sweep_after") else ""))
        if caller in live and callee in live:
            pairs[(caller, callee)] = pairs.get((caller, callee), 0) + 1
        else:
            for d in ends & live:
                stale[d] = stale.get(d, 0) + 1
    for (a, b), n in sorted(pairs.items()):
        if n > per_pair:
            out.append(f"{n} channels from domain {a} to domain {b} (at most {per_pair} expected): channels leak")
    for d, n in sorted(stale.items()):
        bound = per_pair * max(1, len(live) - 1)
        if n > bound:
            out.append(f"domain {d} holds {n} channels to dead domains (at most {bound} expected while they "
                       f"are torn down): channels leak")
    records = ch.get("channels", [])
    want_fds = sum(1 for c in records if c.get("fd_open"))
    if ch.get("memfd_fds", 0) != want_fds:
        out.append(f"the supervisor holds {ch.get('memfd_fds')} channel memfd(s) but its records account for "
                   f"{want_fds}: a segment's fd leaked")
    if ch.get("memfd_maps", 0) > len(records):
        out.append(f"the supervisor maps {ch.get('memfd_maps')} channel segment(s) but has {len(records)} "
                   f"channel(s): a freed channel's memory stays mapped")
    left = heap_reply.get("leftovers", {})
    for b in left.get("bells", []):
        if b not in live:
            out.append(f"the doorbell of domain {b} is still in the runtime directory, which is not alive")
    for f in left.get("shm", []):
        if f != left.get("heap_file"):
            out.append(f"{f} in /dev/shm is not the instance's heap: a leaked shared-memory file")
    return out


#: channel segments a process may map beyond the channels it holds ends of: none
#: (Runtime.serve_own once kept the channel it served last, hence its mapping, after the
#: call; it restores the outer one now)
SERVING_SLACK = 0


def mapping_problems(maps_by_pid: dict[int, int], rows: list[dict], heap_reply: dict,
                     slack: int = SERVING_SLACK) -> list[str]:
    """No process keeps a channel's memory alive past its channel: each live process
    (`maps_by_pid`: pid -> distinct channel segments it maps, from /proc/<pid>/maps)
    maps at most as many segments as there are channels holding an end of a domain it
    hosts (a group hosts several), plus `slack`.  A segment mapped beyond that is a
    freed channel's, or a dead peer's, whose memory only that mapping keeps."""
    live = [r for r in rows if r.get("pid") and r["state"] in ("running", "starting", "stopping")]
    chans = heap_reply.get("channels", {}).get("channels", [])
    out = []
    for pid, n in sorted(maps_by_pid.items()):
        ids = {r["id"] for r in live if r["pid"] == pid}
        held = sum(1 for c in chans if ids & set(c["ends"]))
        if n > held + slack:
            names = ", ".join(sorted(r["name"] for r in live if r["pid"] == pid)) or "?"
            out.append(f"process {pid} ({names}) maps {n} channel segment(s) but holds ends of {held} channel(s): "
                       f"a freed channel's memory stays alive")
    return out


def dead_client_problems(name: str, did: int, heap_reply: dict, rows: list[dict]) -> list[str]:
    """An attached client a fault ended, once the supervisor dropped it from the table:
    none of its heap objects left, no channel with an end of it.  (Checked before its
    replacement attaches, which may get the same id.)"""
    if did in _live_ids(rows):
        return []  # the id is someone else's already: the general checks cover it
    out = []
    d = heap_reply.get("stats", {}).get("domains", {}).get(str(did), {})
    if d.get("objects", 0):
        out.append(f"{d['objects']} heap object(s) ({d.get('bytes', 0)} bytes) of {name} (domain {did}) "
                   f"survived its death")
    for c in heap_reply.get("channels", {}).get("channels", []):
        if did in c["ends"]:
            out.append(f"channel {c['id']} ({c['caller']}->{c['callee']}) still holds an end of {name} "
                       f"(domain {did}) after its death")
    return out


def bystander_problems(before: list[dict], after: list[dict], hit: set[str], clients=frozenset()) -> list[str]:
    """A wave that hit only attached clients leaves every domain and device as it was:
    the same process, running (a client's death must not disturb what it called)."""
    if not hit or not hit <= set(clients):
        return []
    now = {r["name"]: r for r in after}
    out = []
    for r in before:
        if r["kind"] not in ("domain", "device") or r["state"] != "running":
            continue
        a = now.get(r["name"])
        if a is None or a["state"] != "running" or a["pid"] != r["pid"]:
            got = "gone" if a is None else f"{a['state']}, pid {a['pid']}"
            out.append(f"{r['name']} was disturbed by a fault of {', '.join(sorted(hit))} only "
                       f"(was running as pid {r['pid']}, now {got})")
    return out


def stale_problems(old_procs: dict[int, str], survivors: list[int], old_files: dict[str, int],
                   new_files: dict[str, int | None]) -> list[str]:
    """After a kill -9 of the supervisor and the next `up` of the same instance: no
    process of the dead instance alive (`survivors`: those of `old_procs`, pid ->
    what it was, still running as the same process), and none of its files (path ->
    inode before the kill: the heap, a marker standing for its runtime directory with
    the sockets, token, doorbells and records in it) still there as the same file:
    each is gone or made anew."""
    out = [f"process {pid} ({old_procs.get(pid, '?')}) of the killed supervisor's instance is still running "
           f"after the next `up`" for pid in sorted(survivors)]
    for path, ino in sorted(old_files.items()):
        if new_files.get(path) == ino:
            out.append(f"{path} of the killed supervisor's instance was not cleaned by the next `up` (same inode)")
    return out


def deadline_problems(slow_calls: list[tuple[str, float, float]], grace_s: float) -> list[str]:
    """Calls that took longer than their deadline plus `grace_s`: a caller left hanging.
    `slow_calls` holds (what, seconds taken, deadline)."""
    return [f"{what} took {took:.1f}s, past its {deadline:g}s deadline (+{grace_s:g}s grace): a hung caller"
            for what, took, deadline in slow_calls if took > deadline + grace_s]


def leftover_problems(leftovers: list[str]) -> list[str]:
    return [f"left behind after down: {x}" for x in leftovers]
