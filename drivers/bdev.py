"""The block-device interfaces drivers export, as in RedLeaf: `BDev` (one block per
call, the buffer moved in and out) and `NvmeBDev` (batched: RRefDeques of requests,
one doorbell per batch, completions collected by polling)."""

from __future__ import annotations

from redleaf.domains import Borrow, interface, raises
from redleaf.shared_heap import RRef, RRefDeque, Bytes, record, u32, u64

BLOCK_SIZE = 4096


class BlockError(Exception):
    """The device failed the request (the NVMe status is in the message)."""


@record
class Block:
    data: Bytes[BLOCK_SIZE]


@record
class BlockReq:
    data: Bytes[BLOCK_SIZE]  # first, so the data is page-aligned for the device's PRP
    block: u64
    status: u32  # 0 = success, else the NVMe status field
    flags: u32


@interface(timeout_s=30.0)
class BDev:
    @raises(BlockError)
    def read(self, block: int, buf: RRef[Block]) -> RRef[Block]: ...
    @raises(BlockError)
    def write(self, block: int, buf: Borrow[RRef[Block]]) -> None: ...
    @raises(BlockError)
    def flush(self) -> None: ...
    def info(self) -> tuple[int, int]: ...  # (block size, number of blocks)


@interface(timeout_s=30.0)
class NvmeBDev:
    """BlockError: a malformed deque from the caller (the driver is unharmed)."""

    @raises(BlockError)
    def submit_and_poll(self, submit: RRefDeque[BlockReq], collect: RRefDeque[BlockReq],
                        write: bool) -> tuple[int, RRefDeque[BlockReq], RRefDeque[BlockReq]]: ...
    @raises(BlockError)
    def poll(self, collect: RRefDeque[BlockReq]) -> tuple[int, RRefDeque[BlockReq]]: ...
    def stats(self) -> tuple[int, int, int, int]: ...  # (submitted, completed, errors, in flight)
