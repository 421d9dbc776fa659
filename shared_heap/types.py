"""Exchangeable record types: fixed-width fields laid out like a C struct.

    @record
    class BlockReq:
        block: u64
        len: u32
        data: Bytes[4096]

A record type is a numpy structured dtype with a stable 32-bit type id (crc32 of its
qualified name and layout), so every process agrees on ids without coordination.
"""

from __future__ import annotations

import zlib

import numpy as np

u8, u16, u32, u64 = np.uint8, np.uint16, np.uint32, np.uint64
i8, i16, i32, i64 = np.int8, np.int16, np.int32, np.int64
f32, f64 = np.float32, np.float64

_TYPES: dict[int, type] = {}  # type id -> record class or ("vec", dtype)
_VEC_DTYPES: dict[int, np.dtype] = {}


class _BytesOf:
    def __init__(self, n: int):
        if not isinstance(n, int) or n <= 0:
            raise TypeError("Bytes[N] needs a positive size")
        self.n = n
        self.dtype = np.dtype(("u1", (n,)))

    def __repr__(self):
        return f"Bytes[{self.n}]"


class Bytes:
    """`Bytes[N]`: a fixed-size byte array field."""

    def __class_getitem__(cls, n):
        return _BytesOf(n)


def _field_dtype(t, where: str):
    if isinstance(t, _BytesOf):
        return t.dtype
    if isinstance(t, type) and issubclass(t, np.generic) and t is not np.object_:
        return np.dtype(t)
    if is_record_type(t):
        return t.dtype
    raise TypeError(f"{where}: field type {t!r} is not fixed-width; use u8..u64, i8..i64, f32, f64, "
                    f"Bytes[N] or another @record")


def type_id_of(name: str, dtype: np.dtype) -> int:
    return zlib.crc32(f"{name}:{dtype.descr}".encode()) or 1


def record(cls):
    """Make `cls` an exchangeable record type (adds dtype, size, type_id)."""
    import sys

    globalns = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
    fields = []
    for name, t in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(t, str):  # `from __future__ import annotations`
            t = eval(t, dict(globalns), dict(vars(cls)))
        fields.append((name, _field_dtype(t, f"{cls.__qualname__}.{name}")))
    if not fields:
        raise TypeError(f"@record {cls.__qualname__} has no fields")
    cls.dtype = np.dtype(fields, align=True)
    cls.size = cls.dtype.itemsize
    cls.type_name = f"{cls.__module__}.{cls.__qualname__}"
    cls.type_id = type_id_of(cls.type_name, cls.dtype)
    cls.__redleaf_record__ = True
    cls.accepts = classmethod(lambda c, v: isinstance(v, np.void) and v.dtype == c.dtype)
    cls.to_bytes = classmethod(lambda c, v: v.tobytes())
    cls.from_bytes = classmethod(lambda c, b: np.frombuffer(bytes(b), dtype=c.dtype, count=1)[0].copy()
                                 if len(b) == c.size else _bad_size(c, b))
    cls.zeros = classmethod(lambda c: np.zeros((), dtype=c.dtype)[()])
    _TYPES[cls.type_id] = cls
    return cls


def _bad_size(c, b):
    raise ValueError(f"{c.type_name} is {c.size} bytes, got {len(b)}")


def is_record_type(t) -> bool:
    return isinstance(t, type) and getattr(t, "__redleaf_record__", False)


def vec_type_id(dtype) -> int:
    dt = np.dtype(dtype)
    tid = type_id_of(f"vec:{dt.str}", dt)
    _VEC_DTYPES[tid] = dt
    return tid


for _dt in ("u1", "i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"):
    vec_type_id(_dt)

ARRAY_TID = type_id_of("container:array", np.dtype("u1"))
DEQUE_TID = type_id_of("container:deque", np.dtype("u1"))


def lookup_type(tid: int):
    return _TYPES.get(tid)


def lookup_vec(tid: int):
    return _VEC_DTYPES.get(tid)
