"""`redleaf bench nvme`: 4 KiB block I/O through the NVMe driver domain, with peers.

Cases: random and sequential 4 KiB reads and writes, batch 1 and batch 32.  A batch
is one `NvmeBDev.submit_and_poll` call with that many requests (one doorbell).
Batch 1 keeps one request in flight; batch 32 keeps up to two batches in flight
(the client fills one while the driver and device work on the other).  Latency is
per request, from the call that submitted it to the call that handed it back.  The
direct peers time the same unit: a batch of 32 is "submitted" when its first
preadv/pwritev starts, and each request's latency ends when its own call returns
(request j of a batch waits for the j before it, as a request of ours waits for its
batch); at batch 1 both are one request's round trip.

Systems, all on the same image file in the same run:
  redleaf          client domain -> driver domain -> emulated controller (device process)
  redleaf-shadow   the same with the shadow in front of the driver (`shadow = true`)
  direct-preadv    one Python process calling os.preadv per 4 KiB request
  direct-pwritev   the same with os.pwritev
Both the device and the peers hit the page cache of the same file: the comparison is
the cost of the isolated driver path, not of the disk.  Both instances are up for
the whole run and the three systems take turns on each case (`--rounds`, order
alternating), so a change in the machine's load hits them alike.

Co-located variants (DESIGN §7a, §8), the client being an NvmeLoad domain
(bench/colo.py) in the group, running the same loop:
  redleaf-colocated               client + shadow + driver in one group (device apart)
  redleaf-colocated-client-shadow client + shadow in one group, the driver in its own process
  redleaf-colocated-noshadow      client + driver in one group, no shadow

Ratio rows: redleaf / direct for every case, redleaf-shadow / redleaf, each
co-located variant / direct, and redleaf-colocated-client-shadow / redleaf (a
shadow co-located with its client against no shadow, both one process hop from
the driver).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time

import numpy as np

from redleaf.bench import row, summarize

B = "nvme"
BLOCK = 4096
#: batches a pipelined client keeps in flight (batch 1 keeps one request)
INFLIGHT_BATCHES = 2
CASES = [(kind, batch) for kind in ("randread", "seqread", "randwrite", "seqwrite") for batch in (1, 32)]


def _case(kind: str, batch: int) -> str:
    return f"{kind}-4k-b{batch}"


def _blocks(kind: str, nblocks: int, n: int, rng) -> np.ndarray:
    if kind.startswith("rand"):
        return rng.integers(0, nblocks, size=n)
    return np.arange(n) % nblocks


def _run_redleaf(q, kind: str, batch: int, nblocks: int, seconds: float, rng) -> tuple[int, float, list[float]]:
    """(requests, elapsed s, per-request latencies in s) through a BatchQueue.

    Batch 1 keeps one request in flight.  Larger batches are pipelined as a client
    that keeps the device busy would do: a new batch goes in whenever at most one
    batch is outstanding, so the client prepares one batch while the driver and the
    device work on the other (queue depth INFLIGHT_BATCHES x batch).  A write writes the pattern
    the request buffers were filled with once, as the direct-pwritev peer writes
    one prepared buffer."""
    write = kind.endswith("write")
    blocks = _blocks(kind, nblocks, 1 << 20, rng).astype(np.uint64)
    nb = len(blocks)
    limit = batch if batch == 1 else INFLIGHT_BATCHES * batch
    if q.depth < limit or q.free < q.depth:
        raise ValueError(f"the BatchQueue needs depth >= {limit} and all its requests free")
    if write:
        pattern = np.frombuffer(bytes(range(256)) * (BLOCK // 256), dtype=np.uint8)
        for off in q.pool.tolist():
            q.data_of(off)[:] = pattern
    slot_of = {off: i for i, off in enumerate(q.pool.tolist())}
    t_sub = np.zeros(len(slot_of))
    lat: list[np.ndarray] = []
    i = 0
    clock = time.perf_counter

    def finish(comp) -> None:
        if not comp:
            return
        now = clock()
        if q.statuses(comp).any():
            raise RuntimeError(f"NVMe status {int(q.statuses(comp).max()):#x} in the benchmark")
        lat.append(now - t_sub[[slot_of[o] for o in comp]])
        q.release(comp)

    # warm-up: one batch not counted
    q.release(q.submit_blocks(write, blocks[:batch]) + q.wait())
    t_start = clock()
    t_end = t_start + seconds
    while True:
        now = clock()
        if now < t_end and q.inflight + batch <= limit:
            sel = blocks[i % nb:i % nb + batch]
            if sel.size < batch:
                sel = np.concatenate([sel, blocks[:batch - sel.size]])
            i += batch
            t_sub[[slot_of[o] for o in q.pool[:batch].tolist()]] = now  # submit takes the first
            finish(q.submit_blocks(write, sel))
        elif q.inflight:
            finish(q.poll())
        else:
            break
    out = np.concatenate(lat) if lat else np.empty(0)
    return out.size, clock() - t_start, out.tolist()


def _run_direct(path: str, kind: str, batch: int, nblocks: int, seconds: float, rng) -> tuple[int, float, list[float]]:
    write = kind.endswith("write")
    fd = os.open(path, os.O_RDWR)
    try:
        buf = [memoryview(bytearray(bytes(range(256)) * (BLOCK // 256)))]
        blocks = (_blocks(kind, nblocks, 1 << 20, rng) * BLOCK).tolist()
        op = os.pwritev if write else os.preadv
        lat: list[float] = []
        clock = time.perf_counter
        i = done = 0
        t_start = clock()
        t_end = t_start + seconds
        add = lat.append
        while clock() < t_end:
            t0 = clock()
            for j in range(batch):
                op(fd, buf, blocks[(i + j) % len(blocks)])
                add(clock() - t0)
            i += batch
            done += batch
        return done, clock() - t_start, lat
    finally:
        os.close(fd)


COLO = {  # system -> (shadow, the group's driver_group, or None without a shadow)
    "redleaf-colocated": (True, None),
    "redleaf-colocated-client-shadow": (True, ""),
    "redleaf-colocated-noshadow": (False, None),
}


def colo_manifest(image: str, size: str, shadow: bool, driver_group, heap: str = "128MiB") -> str:
    """nvme_manifest with the driver entry (its last table) in group "io" and an
    NvmeLoad client domain in that group too."""
    from redleaf.drivers.nvme.manifests import nvme_manifest

    text = nvme_manifest(image, size, shadow=shadow, heap=heap) + 'group = "io"\n'
    if driver_group is not None:
        text += f'driver_group = "{driver_group}"\n'
    return text + ('\n[[domain]]\nname = "load"\ntarget = "redleaf.bench.colo:NvmeLoadDomain"\n'
                   'uses = { nvme = "nvme0" }\ngroup = "io"\n')


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="redleaf bench nvme")
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test, noisy figures)")
    ap.add_argument("--seconds", type=float, default=1.5, help="duration of each case and system")
    ap.add_argument("--rounds", type=int, default=3,
                    help="the systems take turns this many times per case (load drifts; turns pair them)")
    ap.add_argument("--size", default="64MiB", help="image size")
    a = ap.parse_args(argv)
    seconds = 0.3 if a.quick else a.seconds
    rounds = 1 if a.quick else max(1, a.rounds)

    from redleaf.drivers.bdev import BDev, NvmeBDev
    from redleaf.drivers.nvme.client import BatchQueue
    from redleaf.drivers.nvme.manifests import nvme_manifest
    from redleaf.supervisor.instance import Instance
    from redleaf.domains.units import parse_size

    tmp = tempfile.mkdtemp(prefix="redleaf-bench-nvme-")
    image = os.path.join(tmp, "nvme0.img")
    nblocks = parse_size(a.size, "--size") // BLOCK
    with open(image, "wb") as f:  # written, not sparse: reads then hit real cached pages
        chunk = np.random.default_rng(0).bytes(1 << 20)
        for _ in range(nblocks * BLOCK // len(chunk)):
            f.write(chunk)
    rows: list[dict] = []
    iops: dict[tuple[str, str], float] = {}

    def add(case, system, rate, lat):
        iops[(case, system)] = rate
        rows.append(row(B, case, system, "rate", rate, "IOPS"))
        rows.extend(summarize(B, case, system, lat, "us"))

    try:
        with contextlib.ExitStack() as stack:
            queues = {}
            for system, shadow in (("redleaf", False), ("redleaf-shadow", True)):
                # an image belongs to one device (it is locked): each instance its own copy
                own = image if not shadow else image + ".shadow"
                if own != image:
                    shutil.copyfile(image, own)
                inst = stack.enter_context(Instance(nvme_manifest(own, a.size, shadow=shadow, heap="128MiB")))
                inst.wait_state("nvme0", "running", timeout=30)
                c = stack.enter_context(inst.attach())
                if c.lookup("nvme0", BDev).info() != (BLOCK, nblocks):
                    raise RuntimeError("the device does not have the image's geometry")
                q = queues[system] = BatchQueue(c.heap, c.lookup("nvme0", NvmeBDev), depth=64)
                stack.callback(q.close)
            from redleaf.bench.colo import NvmeLoad

            loads = {}
            for system, (shadow, dgroup) in COLO.items():
                own = f"{image}.{system}"   # locked by its device: each instance its own copy
                shutil.copyfile(image, own)
                inst = stack.enter_context(Instance(colo_manifest(own, a.size, shadow, dgroup)))
                inst.wait_state("load", "running", timeout=30)
                c = stack.enter_context(inst.attach())
                loads[system] = c.lookup("load", NvmeLoad)
                if loads[system].info() != (BLOCK, nblocks):
                    raise RuntimeError("the device does not have the image's geometry")
            for kind, batch in CASES:
                peer = "direct-pwritev" if kind.endswith("write") else "direct-preadv"
                systems = ["redleaf", "redleaf-shadow", *COLO, peer]
                acc = {s_: [0, 0.0, []] for s_ in systems}
                for rnd in range(rounds):
                    for system in (systems if rnd % 2 == 0 else systems[::-1]):
                        rng = np.random.default_rng(rnd)
                        if system == peer:
                            n, dt, lat = _run_direct(image, kind, batch, nblocks, seconds / rounds, rng)
                        elif system in loads:
                            n, dt, v = loads[system].measure(kind, batch, seconds / rounds, rnd)
                            lat = v.np[:n].tolist()
                            v.drop()
                        else:
                            n, dt, lat = _run_redleaf(queues[system], kind, batch, nblocks, seconds / rounds, rng)
                        acc[system][0] += n
                        acc[system][1] += dt
                        acc[system][2] += lat
                for system, (n, dt, lat) in acc.items():
                    add(_case(kind, batch), system, n / dt, lat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for kind, batch in CASES:
        case = _case(kind, batch)
        peer = "direct-pwritev" if kind.endswith("write") else "direct-preadv"
        rows.append(row(B, case, "redleaf", "ratio", iops[(case, "redleaf")] / iops[(case, peer)],
                        f"x {peer}"))
        rows.append(row(B, case, "redleaf-shadow", "ratio",
                        iops[(case, "redleaf-shadow")] / iops[(case, "redleaf")], "x redleaf"))
        for system in COLO:
            rows.append(row(B, case, system, "ratio", iops[(case, system)] / iops[(case, peer)], f"x {peer}"))
        rows.append(row(B, case, "redleaf-colocated-client-shadow", "ratio",
                        iops[(case, "redleaf-colocated-client-shadow")] / iops[(case, "redleaf")], "x redleaf"))
    return rows
