"""Fuzz target `fsimage`: damaged Rv6 file-system images through fsck and mount.

Pure and in memory (rv6/fs: mkfs, fsck, fs over a MemDisk).  A small populated image
is made once (directories, files with direct, indirect and double-indirect blocks, a
hard link, a committed-but-unapplied log transaction in some inputs); each input
damages a copy of it in one region (superblock, log header, log data, inode table,
bitmap, a directory block, an indirect block) in one of two ways:
- raw: random bytes over the whole block or a few bytes in it (the checksums of
  superblock, inodes and log header should catch these);
- sealed: fields rewritten with hostile values *and the checksum recomputed*, so the
  damage gets past the CRC into the logic: superblock geometry, inode type, link count,
  size and block pointers (zero, out of range, into metadata, shared, pointing at the
  inode's own index block), directory entries (inode numbers out of range or of free
  inodes, names "", ".", "..", "/", unterminated, a directory naming its parent), a log
  header whose committed homes are the superblock, the log, out of range, duplicated,
  with a data checksum that matches so mount replays them.
Then: fsck must return a report whose problems all have messages (any exception is a
crash); mount must either refuse with an FsError or mount, and then a walk that reads,
writes, truncates, unlinks, makes a directory, renames, syncs and unmounts may raise
only FsError.  Each input runs under a SIGALRM bound (HANG_S): a loop that does not end
is a crash too ("hang").

May call: rv6.fs (disk, format, fs, fsck, mkfs, errors).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import struct
import time
import zlib

from redleaf.rv6.fs.disk import MemDisk
from redleaf.rv6.fs.errors import CorruptionError, FsError
from redleaf.rv6.fs.format import (BSIZE, DIND, IND, INODE_SIZE, INODES_PER_BLOCK, NDIRECT, Dinode,
                                   Superblock, pack_dirent, pack_log_header)
from redleaf.rv6.fs.fs import FileSystem
from redleaf.rv6.fs.fsck import fsck_device
from redleaf.rv6.fs.mkfs import mkfs_device

from .tally import Tally

HANG_S = 20.0
NBLOCKS = 1024
_SB = struct.Struct("<8s10I")


class Hang(Exception):
    """An input ran past HANG_S (raised from SIGALRM)."""


@contextlib.contextmanager
def bounded(seconds: float):
    """Raise Hang in this (main) thread if the body runs longer than `seconds`; where
    signals cannot be used (another thread), the body runs unbounded."""
    try:
        old = signal.signal(signal.SIGALRM, _alarm)
    except ValueError:
        yield
        return
    # an outer timer (pytest-timeout's) is put back afterwards with what is left of it
    t0 = time.monotonic()
    outer = signal.setitimer(signal.ITIMER_REAL, seconds)[0]
    if outer and outer < seconds:
        signal.setitimer(signal.ITIMER_REAL, outer)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - t0), 0.001))


def _alarm(signum, frame):
    raise Hang(f"no answer within {HANG_S:g}s")


class Clock:
    def __init__(self):
        self._c = itertools.count(1_700_000_000 * 10 ** 9, 1000)

    def __call__(self) -> int:
        return next(self._c)


class Image:
    """The populated image every input damages a copy of, and where its structures are."""

    def __init__(self):
        d = MemDisk(NBLOCKS)
        mkfs_device(d, inodes=64, log_blocks=65, now_ns=1, zeroed=True)
        fs = FileSystem(d, Clock())
        fs.mkdir("/d")
        fs.mkdir("/d/e")
        for i in range(4):
            fd = fs.open(f"/d/f{i}", os.O_CREAT | os.O_RDWR)
            # f0 reaches the indirect block, f1 the double-indirect one
            off = {0: (NDIRECT + 2) * BSIZE, 1: (NDIRECT + 1024 + 3) * BSIZE}.get(i, 0)
            fs.pwrite(fd, bytes([i + 1]) * 3000, off)
            fs.close(fd)
        fs.link("/d/f2", "/d/e/g")
        fs.unmount()
        self.blocks = dict(d.blocks)
        self.sb = sb = Superblock.unpack(self.blocks[1], NBLOCKS)
        f = FileSystem(MemDisk(NBLOCKS, self.blocks), Clock())
        ino = lambda p: f.inodes.iget(f.lookup(p))  # noqa: E731
        self.dirs = [sb.datastart, f.inodes.bmap(ino("/d"), 0, False), f.inodes.bmap(ino("/d/e"), 0, False)]
        self.indirect = [ino("/d/f0").d.addrs[IND], ino("/d/f1").d.addrs[DIND]]
        self.inums = [1, f.lookup("/d"), f.lookup("/d/e")] + [f.lookup(f"/d/f{i}") for i in range(4)]
        self.files = [f.lookup(f"/d/f{i}") for i in range(4)]
        self.data = sorted(b for b in self.blocks if b >= sb.datastart)
        f.unmount()


_IMAGE: Image | None = None


def image() -> Image:
    global _IMAGE
    if _IMAGE is None:
        _IMAGE = Image()
    return _IMAGE


def _hostile_block(rng: random.Random, img: Image) -> int:
    sb = img.sb
    return rng.choice([0, 1, sb.logstart, sb.logstart + 1, sb.inodestart, sb.bmapstart, sb.datastart,
                       sb.size - 1, sb.size, NBLOCKS, 2 ** 32 - 1, rng.randrange(2 ** 32),
                       rng.choice(img.data), rng.choice(img.indirect), rng.choice(img.dirs)])


def _raw(rng: random.Random, raw: bytearray) -> str:
    if rng.random() < 0.3:
        raw[:] = rng.randbytes(BSIZE)
        return "random block"
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(256) if rng.random() < 0.7 else rng.randrange(BSIZE)
        raw[i] = rng.randrange(256)
    return "random bytes"


def _seal_superblock(rng: random.Random, img: Image, raw: bytearray) -> str:
    v = list(_SB.unpack_from(raw))
    i = rng.randrange(1, 10)          # any field but the magic
    v[i] = rng.choice([0, 1, v[i] - 1, v[i] + 1, v[i] * 2, NBLOCKS, 2 ** 31, 2 ** 32 - 1, rng.randrange(2 ** 32)])
    body = _SB.pack(*v[:10], 0)
    raw[:_SB.size] = body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))
    return f"superblock field {i}"


def _seal_inode(rng: random.Random, img: Image, raw: bytearray, blk: int) -> str:
    first = blk * INODES_PER_BLOCK
    inums = [n for n in img.inums if first <= n < first + INODES_PER_BLOCK] or [first + rng.randrange(INODES_PER_BLOCK)]
    inum = rng.choice(inums + [first + rng.randrange(INODES_PER_BLOCK)])
    off = (inum % INODES_PER_BLOCK) * INODE_SIZE
    try:
        d = Dinode.unpack(bytes(raw[off:off + INODE_SIZE]), inum)
    except CorruptionError:
        d = Dinode()
    if d.type == 0:
        d.type = rng.choice([1, 2, 3])
    what = rng.randrange(6)
    if what == 0:
        d.type = rng.choice([1, 2, 3, 4, 0xFFFF])
    elif what == 1:
        d.nlink = rng.choice([0, 1, 2, 0xFFFF])
    elif what == 2:
        d.size = rng.choice([0, 1, BSIZE * NDIRECT + 1, 2 ** 32, 2 ** 40, d.size * 3])
    elif what == 3:
        for _ in range(rng.randint(1, 4)):
            d.addrs[rng.randrange(NDIRECT + 2)] = _hostile_block(rng, img)
    elif what == 4:
        d.nblocks = rng.choice([0, 2 ** 32 - 1, d.nblocks + 1])
    else:
        d.major, d.minor, d.mode = rng.randrange(65536), rng.randrange(65536), rng.randrange(2 ** 32)
    try:
        raw[off:off + INODE_SIZE] = d.pack() if d.type else bytes(INODE_SIZE)
    except struct.error:
        raw[off:off + INODE_SIZE] = bytes(INODE_SIZE)
    return f"inode {inum} field {what}"


def _seal_dir(rng: random.Random, img: Image, raw: bytearray) -> str:
    i = rng.randrange(8)          # ".", "..", the first names, or a free slot after them
    inum = rng.choice([0, 1, 2, 63, 64, 65, 2 ** 32 - 1, rng.choice(img.inums), rng.randrange(64)])
    name = rng.choice([b"", b".", b"..", b"/", b"a/b", b"x" * 60, b"\xff\xfe", b"f0", b"g", b"\0x"])
    ent = pack_dirent(inum, name[:60])
    raw[i * 64:(i + 1) * 64] = ent
    return f"dirent {i} -> {inum} {name[:12]!r}"


def _seal_log(rng: random.Random, img: Image, blocks: dict[int, bytes]) -> str:
    sb = img.sb
    n = rng.choice([1, 2, 5, sb.logsize])
    homes = [rng.choice([1, sb.logstart, sb.logstart + 1, sb.inodestart, sb.bmapstart, sb.size - 1, sb.size,
                         rng.choice(img.dirs), rng.choice(img.indirect), rng.choice(img.data)])
             for _ in range(n)]
    copies = []
    for j in range(n):
        kind = rng.randrange(3)
        c = rng.randbytes(BSIZE) if kind == 0 else bytes(BSIZE) if kind == 1 else \
            blocks.get(rng.choice(img.dirs + img.indirect + [sb.inodestart]), bytes(BSIZE))
        copies.append(c)
        blocks[sb.logstart + 1 + j] = c
    blocks[sb.logstart] = pack_log_header(homes, copies)
    return f"log header committing {homes[:6]}{'...' if n > 6 else ''}"


REGIONS = ("superblock", "log header", "log data", "inode table", "bitmap", "directory", "indirect")


def damage(rng: random.Random, img: Image | None = None) -> tuple[str, dict[int, bytes]]:
    img = img or image()
    sb = img.sb
    blocks = dict(img.blocks)
    region = rng.choice(REGIONS)
    sealed = rng.random() < 0.6
    if region == "log header" and sealed:
        return f"{region}: {_seal_log(rng, img, blocks)}", blocks
    bno = {"superblock": 1, "log header": sb.logstart, "log data": sb.logstart + 1 + rng.randrange(3),
           "inode table": sb.inodestart + rng.randrange(sb.ninodeblocks), "bitmap": sb.bmapstart,
           "directory": rng.choice(img.dirs), "indirect": rng.choice(img.indirect)}[region]
    raw = bytearray(blocks.get(bno, bytes(BSIZE)))
    if sealed and region == "superblock":
        how = _seal_superblock(rng, img, raw)
    elif sealed and region == "inode table":
        how = _seal_inode(rng, img, raw, bno - sb.inodestart)
    elif sealed and region == "directory":
        how = _seal_dir(rng, img, raw)
    elif sealed and region == "indirect":
        for _ in range(rng.randint(1, 6)):
            struct.pack_into("<I", raw, 4 * rng.randrange(1024), _hostile_block(rng, img))
        how = "hostile block numbers"
    else:
        how = _raw(rng, raw)
    blocks[bno] = bytes(raw)
    return f"{region}: {how}", blocks


def _use(fs: FileSystem) -> None:
    """Walk everything and change something; only FsError may come out."""
    stack, seen, steps = ["/"], set(), 0
    while stack and steps < 200:
        steps += 1
        d = stack.pop()
        try:
            entries = fs.readdir(d)
        except FsError:
            continue
        for e in entries[:50]:
            if e.name in (".", ".."):
                continue
            p = d.rstrip("/") + "/" + e.name
            try:
                s = fs.stat(p)
                if s.is_dir:
                    if s.st_ino not in seen and len(p) < 1000:
                        seen.add(s.st_ino)
                        stack.append(p)
                else:
                    fd = fs.open(p, os.O_RDWR)
                    fs.read(fd, 1 << 20)
                    fs.pwrite(fd, b"new", 5)
                    fs.ftruncate(fd, 1)
                    fs.close(fd)
                    fs.unlink(p)
            except FsError:
                pass
    for op in (lambda: fs.mkdir("/new"), lambda: fs.rename("/d", "/r"), lambda: fs.rmdir("/d/e"),
               fs.sync, fs.unmount):
        try:
            op()
        except FsError:
            pass


def check(what: str, blocks: dict[int, bytes], tally: Tally) -> None:
    """fsck, then mount and use, a damaged image; one tally entry."""
    stage = "fsck"
    try:
        with bounded(HANG_S):
            rep = fsck_device(MemDisk(NBLOCKS, blocks))
            if not all(p.message for p in rep.problems):
                tally.confuse(f"{what}: fsck reported a problem without a message")
                return
            stage = "mount"
            try:
                fs = FileSystem(MemDisk(NBLOCKS, blocks), Clock())
            except FsError as e:
                if rep.clean and not isinstance(e, CorruptionError):
                    tally.confuse(f"{what}: fsck found it clean, mount refused it with {type(e).__name__}: {e}")
                else:
                    tally.refuse(f"mount: {e}"[:300], "refused mount")
                return
            stage = "use"
            _use(fs)
    except Hang as e:
        tally.crash(f"{what}: {stage} hung: {e}")
        return
    except Exception as e:
        tally.crash(f"{what}: {stage} raised {type(e).__name__}: {e}")
        return
    # mounted (maybe with damage fsck reported): a repaired or a clean-error mount
    if rep.clean:
        tally.accept("clean")
    else:
        tally.refuse(f"fsck: {rep.problems[0]}"[:300], "fsck found damage, mount went on")


def run(count: int, seed: int) -> dict:
    tally = Tally("fsimage", seed)
    rng = random.Random(seed)
    img = image()
    for _ in range(count):
        what, blocks = damage(rng, img)
        check(what, blocks, tally)
    return tally.result()
