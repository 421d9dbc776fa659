"""`redleaf bench recovery --driver nvme`: RedLeaf's driver-recovery experiment.

A client reads the disk sequentially in 4 KiB blocks (batches of 32 through
`NvmeBDev`) for N seconds, then writes it sequentially for N seconds, through the
shadowed driver (`shadow = true`).  In one run the driver is killed with SIGKILL
once a second; the other run is the same without crashes.  Both instances are up
together and take turns in slices of about a second (the crashing one is killed
half-way through each of its slices), so that the shared machine's changing load
hits both runs alike; throughput is per second of a run's own active time.  Every block read is
checked against what the image holds (a pattern written before the run), and after
the write phase the image file is checked against every write the client saw
complete.

The driver restarts at once after each kill (`backoff_s = 0`): the experiment
measures recovery, as RedLeaf's does, not the exponential backoff the supervisor
rightly gives a crash loop (with the default policy a kill a second would wait
up to `backoff_max_s` before each restart).

Rows: throughput of both runs and their ratio (RedLeaf reports 95% for reads and
84% for writes, rows `published-redleaf`), client-visible errors (must be 0), blocks
verified, kills, and the median time from a kill to the first request completed
after it.  `--plot FILE.png` draws throughput over time with the kills marked.

`--colocated` adds the same pair with the client in the shadow's group (RedLeaf's
placement: the shadow is trusted code beside its client) and the driver in a process
of its own, rows `redleaf-colocated` and `redleaf-colocated-kill1s`: the client is
then a domain (bench/recovery_colo.py) running the same slices, taking its turns
with the other three instances.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import threading
import time

import numpy as np

from redleaf.bench import published, row

B = "recovery"
BLOCK = 4096
BATCH = 32
CRASH = "redleaf-shadow-kill1s"
CALM = "redleaf-shadow"
COLO_CRASH = "redleaf-colocated-kill1s"  # the client in the shadow's group, the driver apart
COLO_CALM = "redleaf-colocated"
PUBLISHED = {"seqread": 0.95, "seqwrite": 0.84}  # RedLeaf (OSDI'20), NVMe recovery
PUBLISHED_NOTE = ("RedLeaf OSDI'20 §6 NVMe shadow recovery, 4 KiB sequential I/O at batch 32, "
                  "driver killed once a second; real NVMe SSD on the paper's testbed")


def _fill(image: str, nblocks: int) -> None:
    """Block b holds the 64-bit word b, 512 times: a read can be checked in place."""
    with open(image, "wb") as f:
        step = 256
        for b0 in range(0, nblocks, step):
            f.write(np.repeat(np.arange(b0, b0 + step, dtype=np.uint64), BLOCK // 8).tobytes())


def _slice(run: dict, phase: str, write: bool, seconds: float, nblocks: int) -> None:
    """Sequential I/O on one run for `seconds`, continuing where its last slice stopped.

    run["log"][phase] gets (time, completions) per call that returned some."""
    from redleaf.domains.errors import RpcError

    q, st, log, written = run["q"], run[phase], run["log"][phase], run["written"]
    clock = time.monotonic
    t0 = clock()
    t_end = t0 + seconds
    nxt = st["next"]
    while clock() < t_end:
        items = []
        for _ in range(BATCH):
            b = nxt % nblocks
            if write:
                val = b | ((nxt // nblocks) + 1) << 40
                items.append((b, np.full(BLOCK // 8, val, dtype=np.uint64).tobytes()))
            else:
                items.append((b, None))
            nxt += 1
        comp = []
        try:
            comp = q.submit(write, items)
            if comp:
                log.append((clock(), len(comp)))
            while q.inflight:
                got = q.poll()
                if got:
                    log.append((clock(), len(got)))
                    comp += got
        except RpcError:
            st["errors"] += 1
            q.release(comp)  # completed before the error
            q.reset()
            continue
        for r in comp:
            b = q.block_of(r)
            if q.status_of(r):
                st["errors"] += 1
            elif write:
                written[b] = int(np.frombuffer(q.data_of(r), dtype=np.uint64, count=1)[0])
            else:
                words = np.frombuffer(q.data_of(r), dtype=np.uint64)
                if (words == written.get(b, b)).all():
                    st["verified"] += 1
                else:
                    st["bad"] += 1
            q.release(r)
        st["done"] += len(comp)
    t1 = clock()
    st["next"] = nxt
    st["active"] += t1 - t0
    run["slices"].append((t0, t1))


def colo_manifest(image: str, size: str) -> str:
    """The shadow and the client (bench.recovery_colo's RecoveryLoad domain) in group
    "io", the driver in a process of its own (`driver_group = ""`): a SIGKILL of the
    driver leaves the group, and so the client's shadow, alive (RedLeaf's placement)."""
    from redleaf.drivers.nvme.manifests import nvme_manifest

    return (nvme_manifest(image, size, shadow=True, heap="128MiB", max_restarts=10_000, backoff_s=0.0)
            + 'group = "io"\ndriver_group = ""\n'
            + '\n[[domain]]\nname = "load"\ntarget = "redleaf.bench.recovery_colo:RecoveryLoadDomain"\n'
              'uses = { nvme = "nvme0" }\ngroup = "io"\n')


def _collect(run: dict) -> None:
    """A co-located run's state, from its client domain into the run dict the
    attached runs keep (the same fields, so the rows are computed alike)."""
    load = run["load"]
    for phase in ("seqread", "seqwrite"):
        done, active, errors, verified, bad = load.counts(phase)
        run[phase] = {"done": done, "active": active, "errors": errors, "verified": verified, "bad": bad}
        v = load.log(phase)
        flat = v.np.copy()
        v.drop()
        run["log"][phase] = [(float(t), int(k)) for t, k in flat[:flat.size // 2 * 2].reshape(-1, 2) if k]
    v = load.slices()
    flat = v.np.copy()
    v.drop()
    run["slices"] = [(float(a), float(b)) for a, b in flat[:flat.size // 2 * 2].reshape(-1, 2) if b > a]
    v = load.written()
    flat = v.np.copy()
    v.drop()
    run["written"] = {int(b): int(w) for b, w in flat[:flat.size // 2 * 2].reshape(-1, 2) if w}


def _run_set(tmp: str, size: str, nblocks: int, seconds: float, colocated: bool = False) -> dict[str, dict]:
    """The calm and the crashing run (and with `colocated` the same pair with the
    client in the shadow's group), side by side: every instance (each with its own
    image) up at once, taking turns in slices of about a second, so that the
    machine's load changes hit all alike.  In each of its slices a crashing run's
    driver is killed once, half-way through."""
    from redleaf.drivers.bdev import BDev, NvmeBDev
    from redleaf.drivers.nvme.client import BatchQueue
    from redleaf.drivers.nvme.manifests import nvme_manifest
    from redleaf.supervisor.instance import Instance

    n_slices = max(1, round(seconds))
    slice_s = seconds / n_slices
    names = [CALM, CRASH] + ([COLO_CALM, COLO_CRASH] if colocated else [])
    runs = {}
    with contextlib.ExitStack() as stack:
        for name in names:
            image = os.path.join(tmp, f"{name}.img")
            _fill(image, nblocks)
            colo = name in (COLO_CALM, COLO_CRASH)
            text = (colo_manifest(image, size) if colo else
                    nvme_manifest(image, size, shadow=True, heap="128MiB", max_restarts=10_000, backoff_s=0.0))
            inst = stack.enter_context(Instance(text))
            inst.wait_state("nvme0", "running", timeout=30)
            c = stack.enter_context(inst.attach())
            run = {"inst": inst, "bdev": c.lookup("nvme0", BDev), "image": image, "crash": name.endswith("-kill1s"),
                   "log": {"seqread": [], "seqwrite": []}, "written": {}, "kills": [], "slices": []}
            if colo:
                from redleaf.bench.recovery_colo import RecoveryLoad

                inst.wait_state("load", "running", timeout=30)
                run["load"] = c.lookup("load", RecoveryLoad)
            else:
                q = BatchQueue(c.heap, c.lookup("nvme0", NvmeBDev), depth=BATCH)
                stack.callback(q.close)
                run["q"] = q
                for phase in ("seqread", "seqwrite"):
                    run[phase] = {"next": 0, "done": 0, "active": 0.0, "errors": 0, "verified": 0, "bad": 0}
            runs[name] = run

        def kill(run: dict) -> None:
            try:
                run["inst"].request("kill", name="nvme0.driver", how="sigkill")
                run["kills"].append(time.monotonic())  # the signal has been sent
            except Exception:
                pass  # still restarting from the previous kill

        for phase, write in (("seqread", False), ("seqwrite", True)):
            for i in range(n_slices):
                for name in (names if i % 2 == 0 else names[::-1]):
                    run = runs[name]
                    timer = threading.Timer(slice_s / 2, kill, (run,)) if run["crash"] else None
                    if timer:
                        timer.start()
                    if "load" in run:
                        run["load"].slice(phase, write, slice_s, nblocks)
                    else:
                        _slice(run, phase, write, slice_s, nblocks)
                    if timer:
                        timer.join()
        for run in runs.values():
            if "load" in run:
                run["load"].flush()
                _collect(run)
                del run["load"]
            else:
                run["bdev"].flush()
                del run["q"]
            img = np.fromfile(run["image"], dtype=np.uint64).reshape(nblocks, BLOCK // 8)
            good = sum(1 for b, v in run["written"].items() if (img[b] == v).all())
            run["image_verified"], run["image_bad"] = good, len(run["written"]) - good
            del run["inst"], run["bdev"]
    return runs


def _active_time(run: dict, t: float) -> float:
    """Wall-clock time -> time the run was active (its slices laid end to end)."""
    acc = 0.0
    for s0, s1 in run["slices"]:
        if t < s1:
            return acc + max(0.0, t - s0)
        acc += s1 - s0
    return acc


def _first_completion_delays(run: dict) -> list[float]:
    """For each kill: the time to the completion that ends the outage it caused.

    A completion logged just after the kill may still be the dead driver's last
    answer, so the outage is taken as the longest gap between completions from
    the kill to the end of its slice, and the delay runs to the completion that
    ends it."""
    times = np.array(sorted(t for ph in ("seqread", "seqwrite") for t, _k in run["log"][ph]))
    out = []
    for k in run["kills"]:
        end = next((s1 for s0, s1 in run["slices"] if s0 <= k < s1), None)
        if end is None:
            continue  # the kill landed after its slice: nothing to measure
        i0 = int(np.searchsorted(times, k))
        i1 = int(np.searchsorted(times, end))
        if i1 <= i0:
            continue  # nothing completed before the slice ended
        seg = times[max(i0 - 1, 0):i1]
        j = int(np.argmax(np.diff(seg))) + 1 if len(seg) > 1 else 0
        out.append(float(seg[j] - k))
    return out


def _plot(path: str, calm: dict, crash: dict, bin_s: float = 0.05, *,
          title: str = "NVMe driver recovery with the shadow (redleaf bench recovery --driver nvme)",
          unit: str = "K IOPS", phases: tuple[str, str] = ("sequential 4 KiB reads", "sequential 4 KiB writes")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    for run, label, color in ((calm, "no crashes", "tab:blue"), (crash, "driver killed once a second", "tab:red")):
        pts = [(_active_time(run, t), k) for ph in ("seqread", "seqwrite") for t, k in run["log"][ph]]
        if not pts:
            continue
        t = np.array([p[0] for p in pts])
        k = np.array([p[1] for p in pts])
        edges = np.arange(0, t.max(), bin_s)  # the last, partial bin would read low
        hist, _ = np.histogram(t, bins=edges, weights=k)
        ax.plot(edges[:-1], hist / bin_s / 1000, label=label, color=color, lw=1)
    for i, kt in enumerate(crash["kills"]):
        ax.axvline(_active_time(crash, kt), color="k", ls=":", lw=0.8,
                   label="kill -9 of the driver" if i == 0 else None)
    reads = crash["seqread"]["active"]
    ax.axvline(reads, color="grey", lw=1.5)
    ax.text(0.01, 0.97, phases[0], transform=ax.transAxes, va="top")
    ax.text(reads + 0.1, ax.get_ylim()[1] * 0.97, phases[1], va="top")
    ax.set_xlabel("time the run was active (s); the two runs took turns in ~1 s slices")
    ax.set_ylabel(f"throughput ({unit}, {bin_s * 1000:.0f} ms bins)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _rows(calm_name: str, calm: dict, crash_name: str, crash: dict) -> list[dict]:
    rows: list[dict] = []
    for phase in ("seqread", "seqwrite"):
        case = f"{phase}-4k-b{BATCH}"
        rate = {n: r[phase]["done"] / r[phase]["active"] if r[phase]["active"] else 0.0
                for n, r in ((calm_name, calm), (crash_name, crash))}
        rows.append(row(B, case, calm_name, "rate", rate[calm_name], "IOPS"))
        rows.append(row(B, case, crash_name, "rate", rate[crash_name], "IOPS"))
        rows.append(row(B, case, crash_name, "ratio", rate[crash_name] / rate[calm_name] if rate[calm_name] else 0.0,
                        f"x {calm_name}"))
        for system, run_ in ((calm_name, calm), (crash_name, crash)):
            rows.append(row(B, case, system, "errors", run_[phase]["errors"] + run_[phase]["bad"], "errors"))
    for system, run_ in ((calm_name, calm), (crash_name, crash)):
        n = run_["seqread"]["verified"] + run_["image_verified"]
        rows.append(row(B, "data-verified", system, "count", n, "blocks"))
        rows.append(row(B, "data-verified", system, "errors", run_["image_bad"], "blocks"))
    rows.append(row(B, "kills", crash_name, "count", len(crash["kills"]), "kills"))
    delays = _first_completion_delays(crash)
    if delays:
        rows.append(row(B, "kill-to-first-completion", crash_name, "median", statistics.median(delays) * 1e3, "ms"))
        rows.append(row(B, "kill-to-first-completion", crash_name, "p99",
                        sorted(delays)[min(len(delays) - 1, int(len(delays) * 0.99))] * 1e3, "ms"))
    return rows


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench recovery --driver nvme")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase (reads, writes)")
    ap.add_argument("--quick", action="store_true", help="3-second phases")
    ap.add_argument("--size", default="64MiB", help="image size")
    ap.add_argument("--colocated", action="store_true",
                    help="also the redleaf-colocated pair: the client in the shadow's group, the driver apart")
    ap.add_argument("--plot", metavar="FILE.png", help="plot throughput over time with the kills marked")
    a = ap.parse_args(argv)
    seconds = 3.0 if a.quick else a.seconds
    from redleaf.domains.units import parse_size

    nblocks = parse_size(a.size, "--size") // BLOCK
    tmp = tempfile.mkdtemp(prefix="redleaf-bench-recovery-")
    try:
        runs = _run_set(tmp, a.size, nblocks, seconds, a.colocated)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = _rows(CALM, runs[CALM], CRASH, runs[CRASH])
    for phase in ("seqread", "seqwrite"):
        rows.append(published(B, f"{phase}-4k-b{BATCH}", "published-redleaf", "ratio", PUBLISHED[phase],
                              "x no crashes", PUBLISHED_NOTE))
    if a.colocated:
        rows += _rows(COLO_CALM, runs[COLO_CALM], COLO_CRASH, runs[COLO_CRASH])
    if a.plot:
        _plot(a.plot, runs[CALM], runs[CRASH])
    return rows
