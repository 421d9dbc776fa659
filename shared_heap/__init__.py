"""The exchange heap: one shared-memory arena, an ownership table in it, typed
handles (RRef) with move semantics, and reclamation of a dead domain's objects.
Imports nothing else of the project."""

from .allocator import Heap
from .errors import HeapCorrupt, HeapError, HeapExhausted, OwnershipError, RedleafError
from .manager import HeapManager, ReclaimReport
from .rref import RRef, RRefArray, RRefDeque, RRefVec
from .types import Bytes, f32, f64, i8, i16, i32, i64, is_record_type, record, u8, u16, u32, u64

__all__ = ["Heap", "HeapManager", "ReclaimReport", "RRef", "RRefVec", "RRefArray", "RRefDeque", "record",
           "is_record_type", "Bytes", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64",
           "RedleafError", "HeapError", "OwnershipError", "HeapExhausted", "HeapCorrupt"]
