"""Binary layout of the heap file: constants, numpy dtypes of the tables, header codec.

Why a module of its own: every process (domains, the supervisor, ``redleaf heap``) must
agree on these bytes without talking to each other, so they are defined once here and are
also described in msgpack in the header page (schema + type registry), so a tool that does
not import this package can still parse the ownership table.

File layout (offsets page aligned)::

    header page   | HEADER struct: magic b"RLHEAP01", version, geometry, table offsets
    registry      | REGISTRY bytes: u32 length + msgpack {"schema": ..., "types": {...}}
    domain table  | max_domains x 256 B (DOMAIN_DTYPE); index == domain id
    chunk table   | n_chunks x 16 B (CHUNK_DTYPE)
    record table  | n_records x 40 B (RECORD_DTYPE); slot 0 reserved (0 means "none")
    occupancy map | n_chunks x 1024 u32: record slot whose object starts at that 64 B unit
    arena         | n_chunks x 64 KiB
"""

from __future__ import annotations

import dataclasses
import struct

import msgpack
import numpy as np

from .errors import HeapCorrupt

MAGIC = b"RLHEAP01"
VERSION = 1
PAGE = 4096
CHUNK = 64 * 1024
UNIT = 64
UNITS = CHUNK // UNIT          # occupancy-map entries per chunk
MIN_CLASS = 6                  # log2 of the smallest size class (64 B)
MAX_CLASS = 15                 # log2 of the largest size class (32 KiB); bigger = chunk runs
REGISTRY = 256 * 1024
DOMAIN_ENTRY = 256
JOURNAL_OFF = 16
RUNTIME_OFF = 192
RUNTIME_SIZE = 64

R_FREE, R_LIVE, R_DEFERRED = 0, 1, 2
C_FREE, C_LEASED, C_ORPHAN, C_LARGE, C_LARGE_TAIL = 0, 1, 2, 3, 4
D_EMPTY, D_ALIVE, D_DEAD = 0, 1, 2
K_RAW, K_RECORD, K_VEC, K_ARRAY, K_DEQUE = 0, 1, 2, 3, 4
J_FREE = 1

# record: state flags kind owner gen type_id offset size borrower parent
REC = struct.Struct("<BBHIIIQQII")
REC_SIZE = REC.size
F_STATE, F_FLAGS, F_KIND, F_OWNER, F_GEN, F_TYPE = 0, 1, 2, 4, 8, 12
F_OFFSET, F_SIZE, F_BORROWER, F_PARENT = 16, 24, 32, 36
RECORD_DTYPE = np.dtype([
    ("state", "u1"), ("flags", "u1"), ("kind", "<u2"), ("owner", "<u4"), ("gen", "<u4"),
    ("type_id", "<u4"), ("offset", "<u8"), ("size", "<u8"), ("borrower", "<u4"), ("parent", "<u4")])
assert RECORD_DTYPE.itemsize == REC_SIZE == 40

CHUNK_DTYPE = np.dtype([
    ("state", "u1"), ("klass", "u1"), ("_pad", "<u2"),
    ("lessee", "<u4"),   # domain holding the lease (0 = none / orphaned)
    ("run", "<u4"),      # LARGE head: run length in chunks
    ("_pad2", "<u4")])
assert CHUNK_DTYPE.itemsize == 16

# free journal (op, slot, map index), written only by the domain itself
JOURNAL = struct.Struct("<III")
DOMAIN_DTYPE = np.dtype([
    ("id", "<u4"), ("state", "u1"), ("_pad", "u1", (11,)),
    ("j_op", "<u4"), ("j_slot", "<u4"), ("j_map", "<u4"),
    ("_reserved", "u1", (RUNTIME_OFF - 28,)),
    ("runtime", "u1", (RUNTIME_SIZE,))])
assert DOMAIN_DTYPE.itemsize == DOMAIN_ENTRY

HEADER = struct.Struct("<8sIIIIIII" "QQQQQQQ")


def _align(n: int, a: int = PAGE) -> int:
    return (n + a - 1) // a * a


@dataclasses.dataclass(frozen=True)
class Layout:
    max_domains: int
    n_records: int
    n_chunks: int
    registry: int
    domains: int
    chunks: int
    records: int
    maps: int
    arena: int
    file_size: int

    @property
    def arena_size(self) -> int:
        return self.n_chunks * CHUNK

    @classmethod
    def compute(cls, size: int, n_records: int, max_domains: int) -> "Layout":
        if size < CHUNK:
            raise ValueError(f"heap size {size} is smaller than one chunk ({CHUNK} bytes)")
        if not 2 <= max_domains <= 1 << 16:
            raise ValueError("max_domains must be between 2 and 65536")
        if not 2 <= n_records < 1 << 32:
            raise ValueError("records must be between 2 and 2**32-1 (slot 0 is reserved)")
        n_chunks = -(-size // CHUNK)
        registry = PAGE
        domains = _align(registry + REGISTRY)
        chunks = _align(domains + max_domains * DOMAIN_ENTRY)
        records = _align(chunks + n_chunks * CHUNK_DTYPE.itemsize)
        maps = _align(records + n_records * REC_SIZE)
        arena = _align(maps + n_chunks * UNITS * 4)
        return cls(max_domains, n_records, n_chunks, registry, domains, chunks, records, maps,
                   arena, arena + n_chunks * CHUNK)

    def encode(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, PAGE, CHUNK, UNIT, self.max_domains, self.n_records,
                           self.n_chunks, self.registry, self.domains, self.chunks, self.records,
                           self.maps, self.arena, self.file_size)

    @classmethod
    def decode(cls, buf, file_size: int | None = None) -> "Layout":
        if len(buf) < HEADER.size:
            raise HeapCorrupt("file is shorter than a heap header: not a redleaf heap")
        f = HEADER.unpack_from(buf, 0)
        if f[0] != MAGIC:
            raise HeapCorrupt(f"bad magic {f[0]!r} (expected {MAGIC!r}): not a redleaf heap file")
        if f[1] != VERSION:
            raise HeapCorrupt(f"heap format version {f[1]} is not supported (this build reads "
                              f"{VERSION}); recreate the heap with this version")
        if (f[2], f[3], f[4]) != (PAGE, CHUNK, UNIT):
            raise HeapCorrupt("heap geometry (page/chunk/unit) does not match this build")
        lay = cls(*f[5:])
        if file_size is not None and file_size < lay.file_size:
            raise HeapCorrupt(f"heap file is truncated: {file_size} bytes, header says {lay.file_size}")
        return lay


def schema() -> dict:
    """Self-description stored in the file so foreign tools can parse the tables."""
    return {
        "format": "redleaf-exchange-heap", "version": VERSION, "chunk": CHUNK, "unit": UNIT,
        "size_classes": [1 << k for k in range(MIN_CLASS, MAX_CLASS + 1)],
        "header": {"struct": HEADER.format, "fields": [
            "magic", "version", "page", "chunk", "unit", "max_domains", "n_records", "n_chunks",
            "registry", "domains", "chunks", "records", "maps", "arena", "file_size"]},
        "record": {"descr": [list(d) for d in RECORD_DTYPE.descr],
                   "states": {"FREE": R_FREE, "LIVE": R_LIVE, "DEFERRED": R_DEFERRED},
                   "kinds": {"raw": K_RAW, "record": K_RECORD, "vec": K_VEC, "array": K_ARRAY,
                             "deque": K_DEQUE}},
        "chunk_table": {"descr": [list(d) for d in CHUNK_DTYPE.descr],
                        "states": {"FREE": C_FREE, "LEASED": C_LEASED, "ORPHAN": C_ORPHAN,
                                   "LARGE": C_LARGE, "LARGE_TAIL": C_LARGE_TAIL}},
        "domain": {"descr": [[d[0], d[1]] + ([list(d[2])] if len(d) > 2 else [])
                             for d in DOMAIN_DTYPE.descr],
                   "states": {"EMPTY": D_EMPTY, "ALIVE": D_ALIVE, "DEAD": D_DEAD},
                   "runtime_area": [RUNTIME_OFF, RUNTIME_SIZE]},
        "map": {"dtype": "<u4", "entries_per_chunk": UNITS},
    }


def read_registry_doc(buf, lay: Layout) -> dict:
    n = struct.unpack_from("<I", buf, lay.registry)[0]
    if n == 0:
        return {"schema": schema(), "types": {}}
    if n > REGISTRY - 4:
        raise HeapCorrupt("type registry length is out of range")
    try:
        return msgpack.unpackb(bytes(buf[lay.registry + 4:lay.registry + 4 + n]),
                               strict_map_key=False)
    except Exception as e:
        raise HeapCorrupt(f"type registry does not decode ({e}); was the header overwritten?") from e


def write_registry_doc(buf, lay: Layout, doc: dict) -> bool:
    """Write the registry (manager only). Returns False if it does not fit."""
    raw = msgpack.packb(doc, use_bin_type=True)
    if len(raw) > REGISTRY - 4:
        return False
    struct.pack_into("<I", buf, lay.registry, 0)       # readers see "empty" during the update
    buf[lay.registry + 4:lay.registry + 4 + len(raw)] = raw
    struct.pack_into("<I", buf, lay.registry, len(raw))
    return True
