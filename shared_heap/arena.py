"""The heap file: create / open / unlink it, map it, expose numpy views of its tables.

Why plain ``mmap`` on a file in /dev/shm: ``multiprocessing.shared_memory`` registers
segments with a resource tracker that unlinks them when a user process exits, which would
destroy the heap under the supervisor. A named file also lets a restarted supervisor, or
``redleaf heap --check`` from another process, find and inspect an instance.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from . import layout as L
from .errors import HeapCorrupt, HeapError


class HeapFile:
    """One mapping of a heap file, with zero-copy numpy views of its tables."""

    def __init__(self, path: str, fd: int, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        try:
            size = os.fstat(fd).st_size
            if size < L.PAGE:
                raise HeapCorrupt(f"{path} is too small ({size} bytes) to be a redleaf heap")
            self.mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE)
            # slicing a memoryview is zero-copy (slicing the mmap itself would copy)
            self.mem = memoryview(self.mm)
        finally:
            os.close(fd)
        self.layout = lay = L.Layout.decode(self.mem, size)
        self.arena_off = lay.arena
        self.arena_end = lay.arena + lay.arena_size
        m = self.mem
        self.records = np.ndarray(lay.n_records, L.RECORD_DTYPE, buffer=m, offset=lay.records)
        self.chunks = np.ndarray(lay.n_chunks, L.CHUNK_DTYPE, buffer=m, offset=lay.chunks)
        self.domains = np.ndarray(lay.max_domains, L.DOMAIN_DTYPE, buffer=m, offset=lay.domains)
        self.maps = np.ndarray((lay.n_chunks, L.UNITS), "<u4", buffer=m, offset=lay.maps)
        self.closed = False

    @classmethod
    def create(cls, path: str, size: int, records: int, max_domains: int) -> "HeapFile":
        lay = L.Layout.compute(int(size), int(records), int(max_domains))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise HeapError(f"heap file {path} already exists: another instance uses it or a stale "
                            "one was left behind (stop it, or unlink the file)") from None
        try:
            os.ftruncate(fd, lay.file_size)
            os.pwrite(fd, lay.encode()[8:], 8)
            os.pwrite(fd, L.MAGIC, 0)      # magic last: a half-made file is never a heap
            hf = cls(path, fd)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            os.unlink(path)
            raise
        L.write_registry_doc(hf.mem, lay, {"schema": L.schema(), "types": {}})
        hf.domains["state"][0] = L.D_ALIVE   # id 0: the global pool / manager
        return hf

    @classmethod
    def open(cls, path: str, readonly: bool = False) -> "HeapFile":
        try:
            fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        except FileNotFoundError:
            raise HeapError(f"heap file {path} does not exist: is the instance running?") from None
        return cls(path, fd, readonly)

    def close(self) -> None:
        """Unmap. If views are still exported, the mapping goes when the last one does."""
        if self.closed:
            return
        self.closed = True
        self.records = self.chunks = self.domains = self.maps = None
        try:
            self.mem.release()
            self.mm.close()
        except BufferError:
            pass

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def read_registry(self) -> dict[int, dict]:
        doc = L.read_registry_doc(self.mem, self.layout)
        return {int(k): v for k, v in doc.get("types", {}).items()}

    def write_registry(self, types: dict[int, dict]) -> bool:
        return L.write_registry_doc(self.mem, self.layout, {"schema": L.schema(), "types": types})

    def runtime_area(self, domain_id: int) -> memoryview:
        """64-byte area of a domain's entry for the domains package (heartbeat, counters)."""
        if not 0 <= domain_id < self.layout.max_domains:
            raise HeapError(f"domain id {domain_id} out of range 0..{self.layout.max_domains - 1}")
        start = self.layout.domains + domain_id * L.DOMAIN_ENTRY + L.RUNTIME_OFF
        return memoryview(self.mem)[start:start + L.RUNTIME_SIZE]

    def dma_window(self) -> tuple[int, int]:
        """(first, end) byte offsets of the arena in the file: valid DMA addresses."""
        return self.arena_off, self.arena_end
