"""Fuzz target `deque`: malformed RRefDeque batches into the NVMe driver's NvmeBDev.

An attached client calls `submit_and_poll` / `poll` of a real NVMe driver domain (an
emulated device on a temporary image), each input one of:
- a submit deque whose entries are forged with the batch API's unchecked
  `RecordOps.put_records` (the receiver must check them): random slots and
  generations, a slot past the ownership table, slot 0, a live request of ours under
  another generation, one that is not inside this deque (top level, or inside the
  collect deque), the same request twice in one batch; mixed with good requests;
- good requests for blocks past the end of the device (up to 2**64 - 1);
- the same deque passed as both the submit and the collect deque;
- a good batch of reads and writes, whose data must come back intact.
A forged batch must be refused with BlockError (the declared error of a malformed
deque) or an OwnershipError at the caller; an out-of-range block must complete with
an error status; the driver keeps its pid throughout, a good write and read work
between the inputs, and the driver holds no more heap objects at the end than at
the start (a refused batch does not stay with it).

May call: supervisor.instance (run() starts its own instance), domains (attach,
errors), drivers (the NVMe manifest, BDev interfaces, the batch client),
shared_heap (RecordOps); numpy.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import tempfile

import numpy as np

from redleaf.domains.errors import OwnershipError, RpcError
from redleaf.drivers.bdev import BLOCK_SIZE, BlockError, BlockReq, BDev, NvmeBDev
from redleaf.drivers.nvme.client import BatchQueue
from redleaf.drivers.nvme.manifests import nvme_manifest
from redleaf.shared_heap.batch import RecordOps

from .tally import Tally

CHECK_EVERY = 10
IMAGE_SIZE = "4MiB"


class DequeFuzzer:
    def __init__(self, client, tally: Tally):
        self.d = client
        self.t = tally
        self.dev = client.lookup("nvme0", NvmeBDev)
        self.nblocks = client.lookup("nvme0", BDev).info()[1]
        self.q = BatchQueue(client.heap, self.dev, depth=16)
        self.ops = RecordOps(client.heap, BlockReq)
        self.n_records = client.heap.n_records

    def one(self, rng: random.Random) -> None:
        k = rng.randrange(10)
        if k < 5:
            self.forged(rng)
        elif k < 7:
            self.far_blocks(rng)
        elif k < 8:
            self.same_deque()
        else:
            self.good(rng)

    def forged(self, rng: random.Random) -> None:
        ops = self.ops
        sub, col = ops.deque(8), ops.deque(8)
        good = ops.alloc(3)
        ops.set(good, "block", np.arange(3, dtype=np.uint64))
        gs, gg = ops.records_of(good)
        inside = ops.alloc(1)
        ops.put(col, inside)                               # a request inside the collect deque
        cs, cg = ops.records_of(inside)
        slots, gens, what = [], [], []
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(7)
            if k == 0:
                s, g, w = rng.randrange(1 << 32), rng.randrange(1 << 32), "forged"
            elif k == 1:
                s, g, w = rng.randrange(self.n_records, 1 << 32), rng.randrange(4), "out of range"
            elif k == 2:
                s, g, w = 0, rng.randrange(4), "slot 0"
            elif k == 3:
                s, g, w = int(gs[0]), (int(gg[0]) + rng.randint(1, 9)) & 0xFFFFFFFF, "stale"
            elif k == 4:
                s, g, w = int(gs[1]), int(gg[1]), "top level, not inside"   # never put: parent 0
            elif k == 5:
                s, g, w = int(cs[0]), int(cg[0]), "inside the collect deque"
            else:
                s, g, w = int(gs[2]), int(gg[2]), "twice"
                slots.append(s)
                gens.append(g)
            slots.append(s)
            gens.append(g)
            what.append(w)
        if rng.random() < 0.5 or "twice" in what:         # a good request beside the bad ones
            ops.put(sub, good[2:3] if "twice" in what else good[:1])
        label = f"forged batch ({', '.join(what)})"
        # a request of ours at top level is a good entry for put_records (it is only
        # forged when written into the deque's entries, where its parent is wrong)
        if rng.random() < 0.3 and set(what) != {"top level, not inside"}:
            # through the batch API: the sender's own RecordOps must refuse them
            try:
                ops.put_records(sub, np.array(slots, dtype=np.int64), np.array(gens, dtype=np.int64))
            except OwnershipError as e:
                self.t.refuse(f"{label} via put_records: {e}"[:300], "forged, refused at the sender")
                self._drop(sub, col, good)
                return
            label += " via put_records"
        else:
            # written into the deque's own entries, as a sender may write its own
            # objects' bytes: the receiver must refuse them
            head, n, cap = struct.unpack_from("<III", self.d.heap.mem, sub.offset)
            pairs = np.ndarray((cap, 2), dtype=np.uint32, buffer=self.d.heap.mem, offset=sub.offset + 16)
            for i, (sl, g) in enumerate(zip(slots[:cap - n], gens)):
                pairs[(head + n + i) % cap] = (sl & 0xFFFFFFFF, g & 0xFFFFFFFF)
            struct.pack_into("<I", self.d.heap.mem, sub.offset + 4, min(cap, n + len(slots)))
        try:
            self.dev.submit_and_poll(sub, col, rng.random() < 0.5)
        except (BlockError, OwnershipError) as e:
            self.t.refuse(f"{label}: {type(e).__name__}: {e}"[:300], "forged")
        except RpcError as e:
            self.t.crash(f"{label}: {type(e).__name__}: {e}")
        else:
            self.t.confuse(f"{label}: accepted")
        finally:
            self._drop(sub, col, good)

    def _drop(self, sub, col, good) -> None:
        """Free what a refused call did not take (still ours); a deque holding forged
        entries cannot be dropped element by element, so it is left to the heap's
        reclamation of this client when it detaches."""
        for h in (sub, col):
            if h.alive:
                try:
                    h.drop()
                except OwnershipError:
                    pass
        self.ops.free(good[self.ops.owned(good)])

    def far_blocks(self, rng: random.Random) -> None:
        q = self.q
        blocks = [rng.choice([self.nblocks, self.nblocks + 1, 2 ** 64 - 1, 2 ** 63, rng.randrange(2 ** 64)])
                  for _ in range(rng.randint(1, 4))]
        try:
            done = q.submit(rng.random() < 0.5, [(b, None) for b in blocks])
            done += q.wait()
        except RpcError as e:
            self.t.crash(f"blocks {blocks}: {type(e).__name__}: {e}")
            return
        bad = [r for r in done if q.status_of(r) == 0 and q.block_of(r) >= self.nblocks]
        q.release(done)
        if bad:
            self.t.confuse(f"blocks {blocks}: a request past the end completed without an error")
        else:
            self.t.refuse(f"blocks past the end: {len(done)} completed with an error status", "far block")

    def same_deque(self) -> None:
        q = self.q
        try:
            self.dev.submit_and_poll(q.sub, q.sub, False)
        except (OwnershipError, BlockError) as e:
            self.t.refuse(f"one deque as submit and collect: {type(e).__name__}: {e}"[:300], "same deque")
        except RpcError as e:
            self.t.crash(f"one deque as submit and collect: {type(e).__name__}: {e}")
        else:
            self.t.confuse("one deque as submit and collect: accepted")

    def good(self, rng: random.Random) -> None:
        q = self.q
        block = rng.randrange(self.nblocks)
        data = rng.randbytes(BLOCK_SIZE)
        try:
            done = q.submit(True, [(block, data)]) + q.wait()
            ok = all(q.status_of(r) == 0 for r in done)
            q.release(done)
            done = q.submit(False, [(block, None)]) + q.wait()
            ok = ok and len(done) == 1 and bytes(q.data_of(done[0])) == data and q.status_of(done[0]) == 0
            q.release(done)
        except RpcError as e:
            self.t.crash(f"a good write and read of block {block}: {type(e).__name__}: {e}")
            return
        if ok:
            self.t.accept("good")
        else:
            self.t.confuse(f"a good write and read of block {block} came back wrong")


def fuzz(inst, count: int, seed: int, tally: Tally | None = None) -> Tally:
    tally = tally or Tally("deque", seed)
    rng = random.Random(seed)
    row = inst.status()["nvme0"]
    pid, objects = row["pid"], row["heap_objects"]
    with inst.attach() as d:
        f = DequeFuzzer(d, tally)
        for i in range(count):
            try:
                f.one(rng)
            except RpcError as e:
                tally.crash(f"the driver became unreachable: {type(e).__name__}: {e}")
                break
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == count:
                row = inst.status()["nvme0"]
                if (row["pid"], row["state"]) != (pid, "running"):
                    tally.crash(f"the driver was pid {pid}; now {row['pid']} {row['state']}", counted=False)
                    break
        f.q.close()
    v = inst.request("heap", check=True)["violations"]
    if v:
        tally.crash(f"heap --check: {v}", counted=False)
    left = inst.status()["nvme0"]["heap_objects"]
    if left != objects:   # refused batches must not stay with the driver
        tally.confuse(f"the driver held {objects} heap objects before and {left} after")
        tally.inputs -= 1
    return tally


def run(count: int, seed: int) -> dict:
    from redleaf.supervisor.instance import Instance

    tally = Tally("deque", seed)
    where = tempfile.mkdtemp(prefix="redleaf-fuzz-deque-")
    try:
        inst = Instance(nvme_manifest(os.path.join(where, "nvme.img"), size=IMAGE_SIZE, heap="32MiB")).start()
        try:
            fuzz(inst, count, seed, tally)
        finally:
            inst.stop()
            left = inst.leftovers()
            inst.cleanup_log()
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if left:
        tally.crash(f"the instance left things behind: {left}", counted=False)
    return tally.result()
