import os
import uuid

import pytest

from redleaf.shared_heap import Heap, HeapManager


SESSION = os.getpid()


def heap_path() -> str:
    # the session's pid in the name: the leak check (tests/conftest.py) looks only at
    # this session's files, so concurrent test sessions cannot flag each other's
    return f"/dev/shm/redleaf-test-{SESSION}-{uuid.uuid4().hex}.heap"


class World:
    """A manager plus in-process domains whose lease_fn calls the manager directly."""

    def __init__(self, size=8 << 20, records=4096, max_domains=16):
        self.path = heap_path()
        self.m = HeapManager.create(self.path, size, records=records, max_domains=max_domains)
        self.heaps = {}

    def domain(self, did: int) -> Heap:
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
