"""The write-ahead log (xv6's log.c). It calls the block cache and the device.

Every change to a block is made in its cache buffer inside an operation
(`begin_op` ... `end_op`) and recorded with `write(buf)`, which pins the buffer and adds its
block number to the running transaction once (absorption). Operations accumulate into one
transaction (group commit); it commits when no operation is running and the log could not
take another whole operation (MAXOPBLOCKS), or when asked (`force`: fsync, sync, unmount).

A commit, against a device that may persist writes between flushes in any order:

    1. copy every logged buffer into the log area;             flush
    2. write the header listing their home blocks  <- THE COMMIT POINT;  flush
    3. install: write each buffer to its home block;          flush
    4. write an empty header;                                  flush

A crash before 2 is durable leaves the old state (the header is still empty); after it,
`recover` at mount copies the log to the homes again (idempotent). The flush after 4 keeps
a stale header from outliving the log blocks the next transaction overwrites.

`op()` wraps begin_op/end_op for the layers above. An FsError raised by an operation is
the caller's error and the operation left its blocks consistent (the layers check before
they change, or undo); any other exception (a damaged block met half-way, a bug) in an
operation that already changed blocks leaves the transaction half-done, so it is dropped,
as a crash would drop it, and the log refuses every later operation with EIO until the file
system is mounted again (ext4's errors=remount-ro, made stricter). A device error during a
commit does the same.

An operation that would change more than MAXOPBLOCKS blocks is a bug of the layer above
(it must split its work, as `file.py` splits large writes): `LogOverflow` says so.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from typing import Iterator

from .bcache import Buf, BufCache
from .disk import BlockDevice
from .errors import CorruptionError, FsError
from .format import (MAXOPBLOCKS, Superblock, crc_blocks, log_data_crc, pack_log_header,
                     unpack_log_header)


class LogOverflow(RuntimeError):
    """An operation logged more blocks than it is allowed (a bug, not a user error)."""


class Log:
    def __init__(self, dev: BlockDevice, cache: BufCache, sb: Superblock, group_commit: bool = True):
        self.dev = dev
        self.cache = cache
        self.sb = sb
        self.group_commit = group_commit
        self.outstanding = 0
        self.blocks: dict[int, Buf] = {}    # home block -> pinned buffer, in log order
        self._op_start = 0                  # len(blocks) when the outermost op began
        self.commits = 0
        self.op_dirtied = False             # did the running outermost op log anything?
        self.failed: str | None = None      # why the log stopped taking operations

    # --- recovery -------------------------------------------------------------------

    def recover(self) -> int:
        """Install a committed transaction left by a crash; return how many blocks."""
        hdr = self.dev.read_block(self.sb.logstart)
        homes = unpack_log_header(hdr, self.sb)
        if homes:
            copies = [self.dev.read_block(self.sb.logstart + 1 + i) for i in range(len(homes))]
            if crc_blocks(copies) != log_data_crc(hdr):
                # the log data was flushed before the header, so this is damage, not a crash
                raise CorruptionError("the log's committed blocks do not match the header's "
                                      "checksum (a damaged log); refusing to install them")
            self.dev.write_blocks(zip(homes, copies))
            self.dev.flush()
            for home in homes:
                self.cache.discard(home)
            self._write_header([])
        return len(homes)

    # --- operations -----------------------------------------------------------------

    def check_alive(self) -> None:
        if self.failed:
            raise FsError(errno.EIO, f"the file system stopped after an error ({self.failed}); "
                                     "unmount and mount it again (the log recovers the last commit)")

    @contextmanager
    def op(self) -> Iterator[None]:
        self.check_alive()
        self.begin_op()
        try:
            yield
        except BaseException as e:
            clean = isinstance(e, FsError) and not isinstance(e, CorruptionError)
            if self.outstanding == 1 and self.op_dirtied and not clean:
                self.failed = f"{type(e).__name__}: {e}"
                self.discard()
            else:
                self.end_op()
            raise
        self.end_op()

    def begin_op(self) -> None:
        if self.outstanding == 0:
            if len(self.blocks) + MAXOPBLOCKS > self.sb.logsize:
                self.commit()
            self._op_start = len(self.blocks)
            self.op_dirtied = False
        self.outstanding += 1

    def end_op(self) -> None:
        assert self.outstanding > 0, "end_op without begin_op"
        self.outstanding -= 1
        if self.outstanding == 0 and (not self.group_commit
                                      or len(self.blocks) + MAXOPBLOCKS > self.sb.logsize):
            self.commit()

    def write(self, buf: Buf) -> None:
        """Record that `buf` changed in the running operation (xv6's log_write)."""
        if self.outstanding == 0:
            raise RuntimeError(f"block {buf.bno} changed outside an operation")
        self.op_dirtied = True
        if buf.bno in self.blocks:
            return
        if len(self.blocks) - self._op_start >= MAXOPBLOCKS or len(self.blocks) >= self.sb.logsize:
            raise LogOverflow(f"an operation changed more than {MAXOPBLOCKS} blocks "
                              f"(log holds {self.sb.logsize}, transaction {len(self.blocks)})")
        self.cache.pin(buf)
        self.blocks[buf.bno] = buf

    # --- commit ---------------------------------------------------------------------

    def commit(self) -> None:
        if self.outstanding:
            raise RuntimeError("commit while an operation is running")
        if not self.blocks:
            return
        items = list(self.blocks.items())
        start = self.sb.logstart + 1
        try:
            self.dev.write_blocks((start + i, bytes(b.data)) for i, (_, b) in enumerate(items))
            self.dev.flush()
            self._write_header([home for home, _ in items],       # the commit point
                               [bytes(b.data) for _, b in items])
            self.dev.write_blocks((home, bytes(b.data)) for home, b in items)
            self.dev.flush()
            self._write_header([])
        except BaseException as e:
            # what reached the disk is unknown: recovery at the next mount decides
            self.failed = f"commit failed: {type(e).__name__}: {e}"
            self.discard()
            raise
        for _, b in items:
            self.cache.unpin(b)
        self.blocks.clear()
        self.commits += 1

    def _write_header(self, homes: list[int], data=()) -> None:
        self.dev.write_block(self.sb.logstart, pack_log_header(homes, data))
        self.dev.flush()

    def force(self) -> None:
        """Make everything done so far durable (fsync, sync, unmount)."""
        self.check_alive()
        self.commit()
        self.dev.flush()

    def discard(self) -> None:
        """Drop the uncommitted transaction, as a crash would (after an internal error
        left it half-done): the disk keeps the last committed state."""
        for home, b in self.blocks.items():
            self.cache.unpin(b)
            self.cache.discard(home)
        self.blocks.clear()
        self.outstanding = 0

    @property
    def pending(self) -> int:
        return len(self.blocks)
