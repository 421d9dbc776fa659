import os
import glob
import time
import uuid

import pytest

from redleaf.supervisor.instance import Instance


def process_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_busy(area, what: str, timeout: float = 60.0) -> None:
    """Wait until a domain is executing a call: its runtime sets RA_BUSY in its runtime
    area of the heap (`heap.runtime_area(domain_id)`) while it serves a call or runs the
    work a call deferred.  A test that has made sure nothing else can keep the domain
    busy learns from this that the domain took *its* request: a kill from then on
    lands inside the call, not before it."""
    from redleaf.domains.doorbell import RA_BUSY

    deadline = time.monotonic() + timeout
    while not area[RA_BUSY]:
        assert time.monotonic() < deadline, f"{what} never started serving the call"
        time.sleep(0.001)


def _shm_files():
    """Heap files of instances this test session started (other sessions may be running)."""
    mine = {f"/dev/shm/redleaf-{os.getuid()}-{n}.heap" for n in Instance.created}
    return {f for f in glob.glob(f"/dev/shm/redleaf-{os.getuid()}-t*") if f in mine} | \
        set(glob.glob(f"/dev/shm/redleaf-test-{os.getpid()}-*"))


SESSION = os.getpid()


def heap_path() -> str:
    # the session's pid in the name: the leak check (no_shm_leaks) looks only at
    # this session's files, so concurrent test sessions cannot flag each other's
    return f"/dev/shm/redleaf-test-{SESSION}-{uuid.uuid4().hex}.heap"


class World:
    """A standalone exchange heap: a manager plus in-process domains whose lease_fn
    calls the manager directly.  No supervisor, no processes: unit tests of heap and
    batch operations get a heap without booting an instance."""

    def __init__(self, size=8 << 20, records=4096, max_domains=16):
        from redleaf.shared_heap import HeapManager

        self.path = heap_path()
        self.m = HeapManager.create(self.path, size, records=records, max_domains=max_domains)
        self.heaps = {}

    def domain(self, did: int):
        from redleaf.shared_heap import Heap

        self.m.register_domain(did)
        h = Heap.open(self.path, did, lambda kind, count, d=did: self.m.lease(d, kind, count),
                      self.m.register_type)
        self.heaps[did] = h
        return h

    def close(self):
        for h in self.heaps.values():
            try:
                h.close()
            except Exception:
                pass
        try:
            self.m.close()
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


@pytest.fixture
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def make_instance():
    """Start instances that are always stopped and checked for leftovers, even on failure."""
    started = []

    def make(manifest: str | None = None, **kw) -> Instance:
        inst = Instance(manifest, **kw)
        started.append(inst)
        return inst.start()

    yield make
    problems = []
    for inst in started:
        inst.stop()
        left = inst.leftovers()
        if left:
            problems.append(f"{inst.name}: {left}")
        inst.cleanup_log()
    assert not problems, f"instances left things behind: {problems}"


@pytest.fixture
def second_client():
    """Start `target(instance_name, conn)` in a spawned process (a process is one client
    domain) and return the test's end of its pipe; the process is killed at the end."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    procs = []

    def start(target, inst: Instance):
        here, there = ctx.Pipe()
        p = ctx.Process(target=target, args=(inst.name, there), daemon=True)
        p.start()
        procs.append(p)
        return here, p

    yield start
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(5)


ECHO_MANIFEST = """
[heap]
size = "32MiB"
records = 65536

[supervisor]
watchdog_s = 2.0

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"
max_restarts = 20
period_s = 5.0
backoff_s = 0.01
"""


@pytest.fixture
def echo_instance(make_instance):
    return make_instance(ECHO_MANIFEST)


@pytest.fixture(scope="session", autouse=True)
def no_shm_leaks():
    before = _shm_files()
    yield
    leaked = _shm_files() - before
    for f in leaked:
        os.unlink(f)
    assert not leaked, f"tests leaked /dev/shm files: {sorted(leaked)}"
