"""Inodes and the block allocator (xv6's fs.c, lower half). Calls the log, the block
cache and the format; nothing above.

Owns: the bitmap allocator (`balloc`/`bfree`), the inode table (`ialloc`/`iget`/`iupdate`/
`ifree`), the block map of a file (`bmap`: NDIRECT direct blocks, then an indirect block,
then a double-indirect block), reading and writing file bytes (`readi`/`writei`) and
shrinking a file in log-sized steps (`shrink_step`). Every change goes through the log,
inside an operation the caller opened; the caller decides times and link counts.

Invariants kept here and checked by fsck: a block is in the bitmap iff exactly one inode
maps it (as data or index block); no block is mapped at or past a file's size rounded up
to a block; bytes past the size inside the last block are zero (so growing a file later
shows zeros); `nblocks` counts data and index blocks.

Every block number read from disk is checked against the data area before use, so a
damaged inode or index block is a CorruptionError, never a write over metadata.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from .bcache import BufCache
from .errors import CorruptionError, FsError
from .format import (BPB, BSIZE, DIND, FREE_INODE, IND, INODE_SIZE, INODES_PER_BLOCK,
                     MAXFILE, MAXFILE_BLOCKS, NDIRECT, NINDIRECT, T_FREE, Dinode, Superblock, inode_block,
                     inode_offset)
from .log import Log


# nblocks is a 32-bit count on disk; a damaged inode's count must not under- or overflow
# it (it once made iupdate raise struct.error; found by the fsimage fuzzer)
def _dec(n: int) -> int:
    return n - 1 if n > 0 else 0


def _inc(n: int) -> int:
    return n + 1 if n < 0xFFFFFFFF else n


class Inode:
    """An in-memory inode: its number, its on-disk fields (`d`) and how many open files
    and other holders refer to it (an unlinked inode is freed when that reaches 0)."""

    __slots__ = ("inum", "d", "ref")

    def __init__(self, inum: int, d: Dinode):
        self.inum = inum
        self.d = d
        self.ref = 0

    @property
    def type(self) -> int:
        return self.d.type

    @property
    def size(self) -> int:
        return self.d.size

    def __repr__(self) -> str:
        return f"Inode({self.inum}, type={self.d.type}, size={self.d.size}, nlink={self.d.nlink})"


@dataclass
class ScanResult:
    free_inodes: int
    free_blocks: int
    orphans: list[int]      # allocated, nlink 0: a crash came between unlink and free
    corrupt: list[int]      # inodes whose checksum or fields are wrong


class Inodes:
    ITABLE_MAX = 4096

    def __init__(self, sb: Superblock, cache: BufCache, log: Log):
        self.sb = sb
        self.cache = cache
        self.log = log
        self.itable: dict[int, Inode] = {}
        self.free_blocks = 0
        self.free_inodes = 0
        self._bhint = 0          # bitmap block to search first
        self._ihint = 1          # inode number to search first

    # --- mount-time scan ---------------------------------------------------------------

    def scan(self) -> ScanResult:
        """Count free blocks and inodes, and find orphans and damaged inodes."""
        sb = self.sb
        bits = []
        for i in range(sb.nbitmap):
            with self.cache.block(sb.bmapstart + i) as b:
                bits.append(np.unpackbits(np.frombuffer(b.data, np.uint8), bitorder="little"))
        used = np.concatenate(bits)[sb.datastart:sb.size]
        self.free_blocks = int(used.size - np.count_nonzero(used))
        free, orphans, corrupt = 0, [], []
        for blk in range(sb.ninodeblocks):
            with self.cache.block(sb.inodestart + blk) as b:
                raw = bytes(b.data)
            for j in range(INODES_PER_BLOCK):
                inum = blk * INODES_PER_BLOCK + j
                if inum == 0:
                    continue
                chunk = raw[j * INODE_SIZE:(j + 1) * INODE_SIZE]
                if chunk == FREE_INODE:
                    free += 1
                    continue
                try:
                    d = Dinode.unpack(chunk, inum)
                except CorruptionError:
                    corrupt.append(inum)
                    continue
                if d.nlink == 0:
                    orphans.append(inum)
        self.free_inodes = free
        return ScanResult(free, self.free_blocks, orphans, corrupt)

    # --- blocks ------------------------------------------------------------------------

    def check_ptr(self, bno: int, what: str) -> int:
        if bno and not self.sb.datastart <= bno < self.sb.size:
            raise CorruptionError(f"{what} points at block {bno}, outside the data area "
                                  f"({self.sb.datastart}..{self.sb.size - 1})")
        return bno

    def balloc(self) -> int:
        """Allocate a zeroed data block (ENOSPC when none is left)."""
        sb = self.sb
        for k in range(sb.nbitmap):
            i = (self._bhint + k) % sb.nbitmap
            with self.cache.block(sb.bmapstart + i) as b:
                arr = np.frombuffer(b.data, np.uint8)
                # bytes past the end of the device are never free: limit the search
                nbytes = min(BSIZE, -(-(sb.size - i * BPB) // 8))
                for byte in np.flatnonzero(arr[:nbytes] != 0xFF):
                    v = int(arr[byte])
                    bit = ((~v) & (v + 1)).bit_length() - 1
                    bno = i * BPB + int(byte) * 8 + bit
                    if bno >= sb.size:
                        break
                    if bno < sb.datastart:
                        raise CorruptionError(f"the bitmap marks metadata block {bno} free")
                    arr[byte] = v | (1 << bit)
                    self.log.write(b)
                    break
                else:
                    continue
                if bno >= sb.size:
                    continue
            self._bhint = i
            self.free_blocks -= 1
            with self.cache.block(bno, read=False) as nb:
                nb.data[:] = bytes(BSIZE)
                self.log.write(nb)
            return bno
        raise FsError(errno.ENOSPC, "no free blocks left on the device")

    def bfree(self, bno: int) -> None:
        self.check_ptr(bno, "a freed pointer")
        with self.cache.block(self.sb.bmapstart + bno // BPB) as b:
            byte, bit = (bno % BPB) // 8, bno % 8
            if not b.data[byte] & (1 << bit):
                raise CorruptionError(f"block {bno} is freed but the bitmap has it free already")
            b.data[byte] &= ~(1 << bit) & 0xFF
            self.log.write(b)
        self.free_blocks += 1

    # --- inodes ------------------------------------------------------------------------

    def _check_inum(self, inum: int) -> None:
        if not 1 <= inum < self.sb.ninodes:
            raise CorruptionError(f"inode number {inum} is out of range (1..{self.sb.ninodes - 1})")

    def iget(self, inum: int) -> Inode:
        self._check_inum(inum)
        ip = self.itable.get(inum)
        if ip is not None:
            return ip
        with self.cache.block(inode_block(self.sb, inum)) as b:
            off = inode_offset(inum)
            d = Dinode.unpack(bytes(b.data[off:off + INODE_SIZE]), inum)
        if d.type == T_FREE:
            # only a directory entry or an orphan scan asks for an inode by number, and
            # neither may name a free one
            raise CorruptionError(f"inode {inum} is free but something refers to it")
        for a in d.addrs:
            self.check_ptr(a, f"inode {inum}")
        if len(self.itable) >= self.ITABLE_MAX and self.log.outstanding == 0:
            # between operations the disk copy is current (every change is iupdate'd in
            # its operation), so an inode nobody holds can be dropped and read again;
            # never inside one, where a caller may hold a changed inode not yet written
            for k in [k for k, v in self.itable.items() if v.ref == 0]:
                del self.itable[k]
        ip = self.itable[inum] = Inode(inum, d)
        return ip

    def iupdate(self, ip: Inode) -> None:
        with self.cache.block(inode_block(self.sb, ip.inum)) as b:
            off = inode_offset(ip.inum)
            b.data[off:off + INODE_SIZE] = ip.d.pack()
            self.log.write(b)

    def ialloc(self, type_: int, mode: int, now: int) -> Inode:
        sb = self.sb
        n = sb.ninodes
        for k in range(n):
            inum = (self._ihint + k) % n
            if inum == 0:
                continue
            if inum in self.itable and self.itable[inum].d.type != T_FREE:
                continue
            with self.cache.block(inode_block(sb, inum)) as b:
                off = inode_offset(inum)
                if bytes(b.data[off:off + INODE_SIZE]) != FREE_INODE:
                    continue
            self._ihint = inum + 1
            ip = Inode(inum, Dinode(type=type_, mode=mode & 0o7777, atime=now, mtime=now, ctime=now))
            self.itable[inum] = ip
            self.iupdate(ip)
            self.free_inodes -= 1
            return ip
        raise FsError(errno.ENOSPC, "no free inodes left")

    def ifree(self, ip: Inode) -> None:
        """Free an inode that holds no blocks (shrink it to 0 first)."""
        # (nblocks is only a count, for st_blocks and fsck: on a damaged inode it may be
        # wrong while nothing is mapped any more, which is what matters here)
        assert not any(ip.d.addrs), f"freeing {ip} that still maps blocks"
        ip.d = Dinode()
        self.iupdate(ip)
        self.itable.pop(ip.inum, None)
        self.free_inodes += 1

    # --- block map ---------------------------------------------------------------------

    def _entry(self, ip: Inode, index_bno: int, i: int, alloc: bool) -> int:
        with self.cache.block(index_bno) as b:
            arr = np.frombuffer(b.data, "<u4")
            a = self.check_ptr(int(arr[i]), f"index block {index_bno} of inode {ip.inum}")
            if a == 0 and alloc:
                a = self.balloc()
                arr[i] = a
                ip.d.nblocks = _inc(ip.d.nblocks)
                self.log.write(b)
            return a

    def _addr(self, ip: Inode, slot: int, alloc: bool) -> int:
        a = self.check_ptr(ip.d.addrs[slot], f"inode {ip.inum}")
        if a == 0 and alloc:
            a = ip.d.addrs[slot] = self.balloc()
            ip.d.nblocks = _inc(ip.d.nblocks)
        return a

    def bmap(self, ip: Inode, bn: int, alloc: bool) -> int:
        """The device block of file block `bn` (0 for a hole unless `alloc`). The caller
        iupdates `ip` before its operation ends when `alloc` may have changed it."""
        if not alloc:
            return int(self.bmap_span(ip, bn, 1)[0])
        if bn < NDIRECT:
            return self._addr(ip, bn, alloc)
        bn -= NDIRECT
        if bn < NINDIRECT:
            ind = self._addr(ip, IND, alloc)
            return self._entry(ip, ind, bn, alloc) if ind else 0
        bn -= NINDIRECT
        if bn >= NINDIRECT * NINDIRECT:
            raise FsError(errno.EFBIG, "offset past the largest file Rv6 can map")
        dind = self._addr(ip, DIND, alloc)
        if not dind:
            return 0
        child = self._entry(ip, dind, bn // NINDIRECT, alloc)
        return self._entry(ip, child, bn % NINDIRECT, alloc) if child else 0

    def bmap_span(self, ip: Inode, bn: int, count: int) -> list[int]:
        """The device blocks of file blocks bn .. bn+count-1 (0 for holes), without
        allocating: a slice of the inode's direct pointers and of each index block, so a
        long read maps its blocks a region at a time instead of one walk per block."""
        if bn < 0 or count < 0 or bn + count > MAXFILE_BLOCKS:
            raise FsError(errno.EFBIG, "offset past the largest file Rv6 can map")
        out: list[int] = []
        lo_ok, hi_ok = self.sb.datastart, self.sb.size
        while len(out) < count:
            b = bn + len(out)
            if b < NDIRECT:
                seg = ip.d.addrs[b:min(NDIRECT, bn + count)]
                where = f"inode {ip.inum}"
            else:
                r = b - NDIRECT
                if r < NINDIRECT:
                    index, lo, where = ip.d.addrs[IND], r, f"inode {ip.inum}"
                else:
                    r -= NINDIRECT
                    dind = self.check_ptr(ip.d.addrs[DIND], f"inode {ip.inum}")
                    index = self._entry(ip, dind, r // NINDIRECT, False) if dind else 0
                    lo, where = r % NINDIRECT, f"index block {dind} of inode {ip.inum}"
                k = min(count - len(out), NINDIRECT - lo)
                if self.check_ptr(index, where):
                    with self.cache.block(index) as blk:
                        seg = np.frombuffer(blk.data, "<u4", k, lo * 4).tolist()
                    where = f"index block {index} of inode {ip.inum}"
                else:
                    seg = [0] * k
            for x in seg:
                if x and not lo_ok <= x < hi_ok:
                    self.check_ptr(x, where)
            out += seg
        return out

    # --- data --------------------------------------------------------------------------

    def readinto(self, ip: Inode, off: int, out: memoryview) -> int:
        """Read up to len(out) bytes at `off`; holes read as zeros. Returns the count.
        The whole blocks go from the cache to `out` in one gather; a partial block at
        either end goes through one block-sized bounce row."""
        n = max(0, min(len(out), ip.d.size - off))
        if n == 0:
            return 0
        dst = np.frombuffer(out, np.uint8, count=n)
        first = off // BSIZE
        bnos = self.bmap_span(ip, first, (off + n - 1) // BSIZE - first + 1)
        gather = self.cache.gather
        head = (-off) % BSIZE                    # bytes before the first block boundary
        if head >= n:
            bounce = np.empty((1, BSIZE), np.uint8)
            gather(bnos, bounce)
            dst[:] = bounce[0, off % BSIZE:off % BSIZE + n]
            return n
        i = 0
        if head:
            bounce = np.empty((1, BSIZE), np.uint8)
            gather(bnos[:1], bounce)
            dst[:head] = bounce[0, BSIZE - head:]
            i = 1
        full = (n - head) // BSIZE
        if full:
            gather(bnos[i:i + full], dst[head:head + full * BSIZE].reshape(full, BSIZE))
        tail = n - head - full * BSIZE
        if tail:
            bounce = np.empty((1, BSIZE), np.uint8)
            gather(bnos[i + full:], bounce)
            dst[n - tail:] = bounce[0, :tail]
        return n

    def readi(self, ip: Inode, off: int, n: int) -> bytes:
        buf = bytearray(max(0, min(n, ip.d.size - off)))
        self.readinto(ip, off, memoryview(buf))
        return bytes(buf)

    def writei(self, ip: Inode, off: int, data: memoryview | bytes) -> int:
        """Write `data` at `off`, growing the file; the caller bounds len(data) so the
        operation fits the log. Returns the bytes written: fewer than asked only when the
        device filled up part way (ENOSPC if nothing could be written)."""
        data = memoryview(data).cast("B")
        if off + len(data) > MAXFILE:
            raise FsError(errno.EFBIG, f"writing {len(data)} bytes at {off} would pass the "
                                       f"{MAXFILE}-byte file size limit")
        done = 0
        try:
            while done < len(data):
                pos = off + done
                bo = pos % BSIZE
                m = min(len(data) - done, BSIZE - bo)
                bno = self.bmap(ip, pos // BSIZE, alloc=True)
                with self.cache.block(bno, read=m < BSIZE) as b:
                    b.data[bo:bo + m] = data[done:done + m]
                    self.log.write(b)
                done += m
        except FsError as e:
            if e.errno != errno.ENOSPC or done == 0:
                raise
        finally:
            # index blocks may have been allocated even if the write failed
            if off + done > ip.d.size:
                ip.d.size = off + done
            self.iupdate(ip)
        return done

    # --- shrinking ---------------------------------------------------------------------

    def shrink_step(self, ip: Inode, target: int, budget: int) -> bool:
        """Free blocks from the end of `ip` towards `target` bytes, at most `budget` frees
        (each dirties one bitmap block; at most six other blocks change: the indirect,
        the double-indirect and two of its children, the inode and the last data block). Returns True when the
        file is `target` bytes long; until then its size steps down to the lowest block
        freed so far, so no block is ever mapped past the size."""
        keep = -(-target // BSIZE)
        st = _Trim(keep, budget)
        a = ip.d.addrs
        if a[DIND]:
            if self._trim(ip, a[DIND], 2, NDIRECT + NINDIRECT, st):
                a[DIND] = 0
        if not st.stopped and a[IND]:
            if self._trim(ip, a[IND], 1, NDIRECT, st):
                a[IND] = 0
        for bn in range(NDIRECT - 1, keep - 1, -1):
            if st.stopped:
                break
            if a[bn]:
                if st.budget == 0:
                    st.stopped = True
                    break
                self.bfree(a[bn])
                a[bn] = 0
                ip.d.nblocks = _dec(ip.d.nblocks)
                st.budget -= 1
                st.low = bn
        if st.stopped:
            ip.d.size = min(ip.d.size, max(target, st.low * BSIZE))
            self.iupdate(ip)
            return False
        if target < ip.d.size and target % BSIZE:
            # the invariant: bytes past the size in the last block are zero
            bno = self.bmap(ip, target // BSIZE, alloc=False)
            if bno:
                with self.cache.block(bno) as b:
                    b.data[target % BSIZE:] = bytes(BSIZE - target % BSIZE)
                    self.log.write(b)
        ip.d.size = target
        self.iupdate(ip)
        return True

    def _trim(self, ip: Inode, bno: int, depth: int, base: int, st: "_Trim") -> bool:
        """Free the blocks at logical index >= st.keep under index block `bno` (covering
        [base, base + 1024**depth)); True if `bno` itself ended empty and was freed."""
        per = NINDIRECT ** (depth - 1)
        self.check_ptr(bno, f"inode {ip.inum}")
        with self.cache.block(bno) as b:
            arr = np.frombuffer(b.data, "<u4")
            changed = False
            for i in np.flatnonzero(arr)[::-1]:
                i = int(i)
                lo = base + i * per
                if lo + per <= st.keep:
                    break
                e = self.check_ptr(int(arr[i]), f"index block {bno} of inode {ip.inum}")
                if depth == 1:
                    if st.budget == 0:
                        st.stopped = True
                        break
                    self.bfree(e)
                    st.budget -= 1
                    ip.d.nblocks = _dec(ip.d.nblocks)
                    st.low = lo
                    freed = True
                else:
                    freed = self._trim(ip, e, depth - 1, lo, st)
                if freed:
                    arr[i] = 0
                    changed = True
                if st.stopped:
                    break
            empty = not arr.any()
            if empty and st.budget > 0:
                # an index block that maps nothing goes too (also a straddling one whose
                # lower part is a hole): it would otherwise outlive the blocks it served
                self.bfree(bno)
                st.budget -= 1
                ip.d.nblocks = _dec(ip.d.nblocks)
                st.low = min(st.low, max(base, st.keep))
                return True
            if changed:
                self.log.write(b)
            if empty:
                st.stopped = True       # no budget left to free it: the next step will
            return False


class _Trim:
    __slots__ = ("keep", "budget", "stopped", "low")

    def __init__(self, keep: int, budget: int):
        self.keep = keep
        self.budget = budget
        self.stopped = False
        self.low = 1 << 62
