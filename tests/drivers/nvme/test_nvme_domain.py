"""The NVMe device process and driver domain under a real supervisor.

Each test boots an instance with one emulated controller backed by an image file in
tmp_path, attaches this process as a client, and talks to the driver through its
`BDev` and `NvmeBDev` interfaces.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from redleaf.domains import DomainCrashed
from redleaf.domains.errors import DomainUnavailable
from redleaf.drivers.bdev import BLOCK_SIZE, BDev, Block, BlockError, NvmeBDev
from redleaf.drivers.nvme import spec as S
from redleaf.drivers.nvme.client import BatchQueue
from redleaf.drivers.nvme.manifests import nvme_manifest

from tests.conftest import process_running, wait_busy

from .domain_rig import Reference, random_io

SLOW = pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="set RUN_SLOW=1 for the long run")
IMAGE_BLOCKS = 4096  # 16 MiB


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "nvme0.img"
    yield str(path)
    path.unlink(missing_ok=True)


def test_bdev_read_write_flush_info_and_errors(make_instance, image):
    inst = make_instance(nvme_manifest(image))
    with inst.attach() as c:
        bdev = c.lookup("nvme0", BDev)
        assert bdev.info() == (BLOCK_SIZE, IMAGE_BLOCKS)
        buf = c.heap.alloc(Block)
        pattern = np.arange(BLOCK_SIZE, dtype=np.uint32).astype(np.uint8)
        buf.np["data"][:] = pattern
        bdev.write(IMAGE_BLOCKS - 1, buf)  # borrowed: still ours afterwards
        assert buf.alive
        bdev.flush()
        got = c.heap.alloc(Block)
        got = bdev.read(IMAGE_BLOCKS - 1, got)
        assert bytes(got.np["data"]) == bytes(pattern)
        with pytest.raises(BlockError, match="outside the device"):
            bdev.write(IMAGE_BLOCKS, buf)
        with pytest.raises(BlockError, match="outside the device"):
            bdev.read(-1 & 0xFFFFFFFF_FFFFFFFF, c.heap.alloc(Block))
        buf.drop()
        got.drop()
    with open(image, "rb") as f:
        f.seek((IMAGE_BLOCKS - 1) * BLOCK_SIZE)
        assert f.read(BLOCK_SIZE) == bytes(pattern)


def test_10000_random_reads_and_writes_match_a_reference(make_instance, image):
    inst = make_instance(nvme_manifest(image))
    ref = Reference(IMAGE_BLOCKS)
    with inst.attach() as c:
        counts = random_io(c.heap, c.lookup("nvme0", BDev), c.lookup("nvme0", NvmeBDev), ref, 10_000)
        c.lookup("nvme0", BDev).flush()
        submitted, completed, errors, inflight = c.lookup("nvme0", NvmeBDev).stats()
    assert counts["batch_reads"] > 3000 and counts["batch_writes"] > 3000 and counts["reads"] and counts["writes"]
    assert ref.verified == counts["batch_reads"] + counts["reads"]  # every read was checked
    assert submitted == completed == counts["batch_reads"] + counts["batch_writes"]
    assert errors == 0 and inflight == 0
    ref.check_image(image)


@pytest.mark.slow
@SLOW
def test_200000_random_reads_and_writes_match_a_reference(make_instance, image):
    inst = make_instance(nvme_manifest(image, "64MiB"))
    ref = Reference(64 << 8)
    with inst.attach() as c:
        random_io(c.heap, c.lookup("nvme0", BDev), c.lookup("nvme0", NvmeBDev), ref, 200_000)
        c.lookup("nvme0", BDev).flush()
    ref.check_image(image)


def test_flushed_writes_survive_kill_9_of_driver_device_and_supervisor(make_instance, image):
    inst = make_instance(nvme_manifest(image))
    ref = Reference(IMAGE_BLOCKS, seed=7)
    with inst.attach() as c:
        random_io(c.heap, c.lookup("nvme0", BDev), c.lookup("nvme0", NvmeBDev), ref, 2000, seed=8)
        c.lookup("nvme0", BDev).flush()
    st = inst.status()
    pids = [st["nvme0"]["pid"], st["nvme0-dev"]["pid"]]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    inst.proc.kill()
    inst.proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(process_running(p) for p in pids):
        time.sleep(0.02)
    assert not any(process_running(p) for p in pids)
    ref.check_image(image)


def test_misprogrammed_commands_get_device_errors_not_a_device_crash(make_instance, image):
    """The batch path leaves LBA checking to the controller: an out-of-range block
    completes with "LBA out of range", and the device (same process) goes on working."""
    inst = make_instance(nvme_manifest(image))
    dev_pid = inst.status()["nvme0-dev"]["pid"]
    with inst.attach() as c:
        q = BatchQueue(c.heap, c.lookup("nvme0", NvmeBDev), depth=8)
        data = bytes(range(256)) * 16
        comp = q.submit(True, [(IMAGE_BLOCKS + 5, data), (1 << 40, data), (3, data)])
        comp += q.wait()
        status = {q.block_of(r): q.status_of(r) for r in comp}
        assert status[IMAGE_BLOCKS + 5] == status[1 << 40] == S.ST_LBA_OUT_OF_RANGE
        assert status[3] == 0
        for r in comp:
            q.release(r)
        comp = q.submit(False, [(3, None)]) + q.wait()
        assert bytes(q.data_of(comp[0])) == data and q.status_of(comp[0]) == 0
        q.release(comp[0])
        assert c.lookup("nvme0", NvmeBDev).stats()[2] == 2  # the driver counted two errors
        q.close()
    st = inst.status()["nvme0-dev"]
    assert st["pid"] == dev_pid and st["state"] == "running" and st["restarts"] == 0


@pytest.mark.parametrize("shadow", [False, True])
def test_a_forged_request_deque_is_the_clients_error_not_a_driver_crash(make_instance, image, shadow):
    """A client that forges its deque (an entry naming a stale generation, an
    object twice) gets the declared BlockError; the driver and its shadow keep
    running and serve the next batch."""
    import numpy as np
    inst = make_instance(nvme_manifest(image, shadow=shadow))
    before = {n: st["pid"] for n, st in inst.status().items()}
    with inst.attach() as c:
        nvme = c.lookup("nvme0", NvmeBDev)
        q = BatchQueue(c.heap, nvme, depth=8)
        held = driver_objects(inst)
        for forge in ("generation", "twice"):
            offs = q._take(3)
            q.ops.set(offs, "block", np.arange(3))
            sub = q.ops.deque(8, offs)
            pairs = np.ndarray((8, 2), dtype=np.uint32, buffer=c.heap.mem, offset=sub.offset + 16)
            if forge == "generation":
                pairs[1, 1] += 1
            else:
                pairs[2] = pairs[0]
            with pytest.raises(BlockError, match="submit_and_poll"):
                nvme.submit_and_poll(sub, q.ops.deque(8), False)
        assert driver_objects(inst) == held  # the refused deques were freed, not kept
        data = bytes(range(256)) * 16
        comp = q.submit(True, [(5, data)]) + q.wait()
        comp += q.submit(False, [(5, None)]) + q.wait()
        assert bytes(q.data_of(comp[-1])) == data and q.status_of(comp[-1]) == 0
        assert nvme.stats()[3] == 0  # nothing of the refused batches is in flight
    after = {n: st["pid"] for n, st in inst.status().items()}
    assert after == before


def test_kill_9_of_the_driver_mid_call_then_restart_reinitialises_the_controller(make_instance, image):
    """The device keeps running; the restarted driver resets and re-initialises it."""
    inst = make_instance(nvme_manifest(image))
    ref = Reference(IMAGE_BLOCKS, seed=3)
    st = inst.status()
    drv_pid, dev_pid = st["nvme0"]["pid"], st["nvme0-dev"]["pid"]
    with inst.attach() as c:
        bdev, nvme = c.lookup("nvme0", BDev), c.lookup("nvme0", NvmeBDev)
        random_io(c.heap, bdev, nvme, ref, 500, seed=4)
        # A synchronous call with no deferred work: once it has returned, the driver is
        # idle (work deferred by earlier calls runs before it serves the next one).
        bdev.flush()
        # Freeze the device, so that the driver, once it has taken our read, waits
        # inside the call for a completion that cannot come; kill it there.
        os.kill(dev_pid, signal.SIGSTOP)
        errors: list = []

        def victim():
            try:
                bdev.read(1, c.heap.alloc(Block))
            except BaseException as e:  # reported to the main thread
                errors.append(e)

        t = threading.Thread(target=victim)
        try:
            t.start()
            # we are the driver's only caller: busy now means it is serving our read
            wait_busy(c.heap.runtime_area(st["nvme0"]["id"]), "the driver")
            assert t.is_alive() and not errors  # the read is still in flight
            os.kill(drv_pid, signal.SIGKILL)
        finally:
            os.kill(dev_pid, signal.SIGCONT)
        t.join(30)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], DomainCrashed), errors
        new = inst.wait_state("nvme0", "running", pid_not=drv_pid)
        assert new["restarts"] == 1
        assert inst.status()["nvme0-dev"]["pid"] == dev_pid  # the hardware was not restarted
        # Same proxies: the link finds the new incarnation.  Everything flushed is there.
        buf = c.heap.alloc(Block)
        for blk in np.flatnonzero(ref.data.any(axis=1))[:50].tolist():
            buf = bdev.read(blk, buf)
            ref.check(blk, buf.buf)
        buf.drop()
        random_io(c.heap, bdev, nvme, ref, 500, seed=5)
        bdev.flush()
    ref.check_image(image)


def test_kill_9_of_the_driver_under_batch_load_without_shadow(make_instance, image):
    """Without a shadow the client sees the crash (DomainCrashed or, between calls,
    DomainUnavailable while the driver restarts), rebuilds its deques, and goes on."""
    inst = make_instance(nvme_manifest(image))
    ref = Reference(IMAGE_BLOCKS, seed=9)
    drv_pid = inst.status()["nvme0"]["pid"]
    with inst.attach() as c:
        bdev, nvme = c.lookup("nvme0", BDev), c.lookup("nvme0", NvmeBDev)
        q = BatchQueue(c.heap, nvme, depth=32)
        loaded = threading.Event()  # set once batches are flowing: the kill lands under load
        killer = threading.Thread(target=lambda: loaded.wait(60) and os.kill(drv_pid, signal.SIGKILL), daemon=True)
        killer.start()
        seen, batches = None, 0
        deadline = time.monotonic() + 60
        while seen is None and time.monotonic() < deadline:
            try:
                comp = q.submit(False, [(b, None) for b in range(32)]) + q.wait()
                for r in comp:
                    q.release(r)
                batches += 1
                if batches == 10:
                    loaded.set()
            except (DomainCrashed, DomainUnavailable) as e:
                seen = e
        killer.join()
        assert seen is not None and batches >= 10, f"the kill was not noticed ({batches} batches)"
        inst.wait_state("nvme0", "running", pid_not=drv_pid)
        q.reset()
        random_io(c.heap, bdev, nvme, ref, 1000, seed=10, queue=q)
        bdev.flush()
        q.close()
    ref.check_image(image)


# -- shadow recovery ---------------------------------------------------------------------


class Killer(threading.Thread):
    """kill -9 the driver at random intervals while the test runs its workload."""

    def __init__(self, inst, name: str, every=(0.05, 0.3), seed: int = 11):
        super().__init__(daemon=True)
        self.inst, self.name, self.every = inst, name, every
        self.rng = np.random.default_rng(seed)
        self.halt = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.halt.wait(float(self.rng.uniform(*self.every))):
            try:
                self.inst.request("kill", name=self.name, how="sigkill")
                self.kills += 1
            except Exception:
                pass  # between incarnations: nothing to kill right now

    def stop(self) -> int:
        self.halt.set()
        self.join(10)
        return self.kills


def _print_domain_tracebacks(inst) -> None:
    """On failure: what the domains wrote to their logs (pytest shows it)."""
    for log in sorted(inst.paths.logs.glob("*.log*")):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            print(f"===== {log.name}\n{text[-6000:]}")


def _shadowed_random_io_under_kills(inst, image, ops: int, seed: int, every=(0.05, 0.3), min_kills=5):
    """At least `ops` operations, and on until `min_kills` kills have landed."""
    ref = Reference(IMAGE_BLOCKS, seed=seed)
    with inst.attach() as c:
        bdev, nvme = c.lookup("nvme0", BDev), c.lookup("nvme0", NvmeBDev)
        random_io(c.heap, bdev, nvme, ref, 300, seed=seed + 1)  # warm up without kills
        killer = Killer(inst, "nvme0.driver", every, seed=seed + 2)
        killer.start()
        done, rounds = 0, 0
        try:
            while done < ops or (killer.kills < min_kills and rounds < 1000):
                n = min(ops, 1000)
                random_io(c.heap, bdev, nvme, ref, n, seed=seed + 3 + rounds)
                done += n
                rounds += 1
        except BaseException:
            _print_domain_tracebacks(inst)
            raise
        finally:
            kills = killer.stop()
        bdev.flush()
        submitted, completed, errors, inflight = nvme.stats()
    assert errors == 0 and inflight == 0 and submitted == completed
    ref.check_image(image)
    st = inst.status()
    assert st["nvme0"]["restarts"] == 0, "the shadow itself must not have crashed"
    # two kill requests can land in one incarnation, so restarts may be fewer than kills
    assert st["nvme0.driver"]["restarts"] > 0 and kills >= min_kills
    return done, kills


def test_shadow_hides_kill_9_of_the_driver_under_load(make_instance, image):
    """Random kill -9s of the driver: no client error, nothing lost or doubled, data intact.

    Any client-visible error fails the test by raising out of the workload."""
    inst = make_instance(nvme_manifest(image, shadow=True))
    _shadowed_random_io_under_kills(inst, image, 5000, seed=20)


@pytest.mark.slow
@SLOW
def test_shadow_hides_hundreds_of_driver_kills(make_instance, image):
    inst = make_instance(nvme_manifest(image, shadow=True, max_restarts=100_000))
    # 300 kills: past the ~250 restarts after which domain ids are reused
    _shadowed_random_io_under_kills(inst, image, 150_000, seed=30, every=(0.01, 0.2), min_kills=300)


def test_shadow_waits_out_a_driver_killed_inside_a_bdev_read(make_instance, image):
    """The synchronous path: the read is re-issued into a fresh buffer."""
    inst = make_instance(nvme_manifest(image, shadow=True))
    st = inst.status()
    drv_pid, dev_pid = st["nvme0.driver"]["pid"], st["nvme0-dev"]["pid"]
    with inst.attach() as c:
        bdev = c.lookup("nvme0", BDev)
        buf = c.heap.alloc(Block)
        buf.buf[:] = b"\x5a" * BLOCK_SIZE
        bdev.write(9, buf)  # synchronous, nothing deferred: the driver is idle after it
        os.kill(dev_pid, signal.SIGSTOP)
        killed: list[bool] = []

        def kill_inside_the_read():
            # the shadow is the driver's only caller, and it calls only for us: busy
            # means the driver is serving our read, which the frozen device cannot end
            try:
                wait_busy(c.heap.runtime_area(st["nvme0.driver"]["id"]), "the driver")
                os.kill(drv_pid, signal.SIGKILL)
                killed.append(True)
            finally:
                os.kill(dev_pid, signal.SIGCONT)

        killer = threading.Thread(target=kill_inside_the_read, daemon=True)
        try:
            killer.start()
            got = bdev.read(9, c.heap.alloc(Block))  # no exception: the shadow re-issues it
        finally:
            killer.join(90)
            os.kill(dev_pid, signal.SIGCONT)
        assert killed == [True]
        assert bytes(got.buf) == b"\x5a" * BLOCK_SIZE
        assert inst.status()["nvme0.driver"]["pid"] != drv_pid
        got.drop()
        buf.drop()


def test_shadow_copes_with_a_device_queue_shallower_than_configured(make_instance, image):
    """queue_depth says 256 but the controller allows 15-entry queues (14 commands): both the
    driver and the shadow hand back what does not fit, and kills are still hidden."""
    inst = make_instance(nvme_manifest(image, shadow=True, device_config={"mqes": 15}))
    _shadowed_random_io_under_kills(inst, image, 2000, seed=40, min_kills=3)


def _client_a(instance: str, conn) -> None:
    """A second client process (a process is one domain): runs the parent's commands."""
    from redleaf.domains import attach
    with attach(instance) as a:
        qa = BatchQueue(a.heap, a.lookup("nvme0", NvmeBDev), depth=8)
        done: list[int] = []
        while True:
            cmd, arg = conn.recv()
            if cmd == "submit":
                done += qa.submit(False, [(int(i), None) for i in arg])
                conn.send(len(done))
            elif cmd == "collect":
                while qa.inflight:
                    done += qa.wait_some()
                conn.send(sorted(qa.block_of(r) for r in done))
                qa.release(done)
                done = []
            elif cmd == "vanish":
                qa.submit(False, [(int(i), None) for i in arg])
                conn.send("submitted")
                os._exit(0)     # gone with its requests outstanding, no goodbye


@pytest.mark.parametrize("shadow", [False, True])
def test_nvmebdev_has_one_client_at_a_time_and_frees_what_a_departed_one_left(make_instance, second_client, image,
                                                                              shadow):
    """Completions are not labelled by client: a second client is refused while the
    first has requests to collect, and a client that leaves with requests outstanding
    leaves them to be freed, never delivered to the next one."""
    inst = make_instance(nvme_manifest(image, shadow=shadow))
    here, a = second_client(_client_a, inst)
    with inst.attach() as b:
        nvme_b = b.lookup("nvme0", NvmeBDev)
        qb = BatchQueue(b.heap, nvme_b, depth=8)
        here.send(("submit", [0, 1, 2, 3]))
        assert here.poll(30), "client A did not start"
        here.recv()
        with pytest.raises(BlockError, match="one NvmeBDev client at a time"):
            qb.submit(False, [(100, None)])
        qb.reset()                         # the refused call took its deques along
        here.send(("collect", None))       # A is not disturbed
        assert here.poll(30) and here.recv() == [0, 1, 2, 3]
        done_b = qb.submit(False, [(100, None)]) + qb.wait()   # A collected all: B's turn
        assert [qb.block_of(r) for r in done_b] == [100]
        qb.release(done_b)
        held = driver_objects(inst)
        here.send(("vanish", list(range(8))))
        assert here.poll(30) and here.recv() == "submitted"
        a.join(10)
        deadline = time.monotonic() + 10
        while True:   # refused until the supervisor has seen A go (it says: retry)
            try:
                comp = qb.submit(False, [(200, None), (201, None)]) + qb.wait()
                break
            except BlockError as e:
                assert "one NvmeBDev client" in str(e) and time.monotonic() < deadline
                qb.reset()
                time.sleep(0.01)
        assert sorted(qb.block_of(r) for r in comp) == [200, 201]   # nothing of A's
        assert qb.poll() == [] and nvme_b.stats()[3] == 0
        assert driver_objects(inst) == held     # A's requests were freed, not kept


def driver_objects(inst) -> int:
    """Heap objects owned by the driver (and its shadow)."""
    return sum(st["heap_objects"] for name, st in inst.status().items() if name.startswith("nvme0"))
