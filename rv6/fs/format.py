"""The on-disk format: the one place each layout is defined. It calls nothing but struct,
numpy and zlib; every layer above packs and parses blocks only through it.

xv6's layout with 4 KiB blocks:

    block 0         boot block (unused, zero)
    block 1         superblock
    log             header block + LOGSIZE blocks
    inodes          INODES_PER_BLOCK (32) 128-byte inodes a block; inode 0 is never used,
                    inode 1 is the root directory
    bitmap          one bit per block of the whole device, 1 = in use (metadata included)
    data

Block numbers are 4-byte little-endian. A file maps NDIRECT (15) direct blocks, one
indirect block of 1024 entries and one double-indirect block of 1024 x 1024 entries:
15 + 1024 + 1048576 = 1049615 blocks = 4 GiB + 4 MiB + 60 KiB, so a file of 1 GiB
(262144 blocks) fits well inside the double-indirect range.

Superblocks, inodes and the log header carry a CRC32 (the header also one of the logged
blocks), so a damaged block is an error at
the moment it is read rather than a wild pointer later. A directory is an array of 64-byte
entries (4-byte inode number, 60-byte NUL-padded name): names up to NAME_MAX = 60 bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import CorruptionError, NotRv6Error

BSIZE = 4096
MAGIC = b"Rv6fs\x00\x1a\x0a"   # a NUL and ^Z/LF like PNG's: a text file or a truncated copy is not us
VERSION = 1

ROOTINO = 1
NDIRECT = 15
NINDIRECT = BSIZE // 4                      # 1024 block numbers in an index block
MAXFILE_BLOCKS = NDIRECT + NINDIRECT + NINDIRECT * NINDIRECT
MAXFILE = MAXFILE_BLOCKS * BSIZE
BPB = BSIZE * 8                             # bitmap bits per block

# Operations are bounded by MAXOPBLOCKS distinct blocks (so one never overflows the log);
# the log must hold at least one operation.
MAXOPBLOCKS = 64
MIN_LOG_BLOCKS = MAXOPBLOCKS + 1            # header + one operation
MAX_LOG_BLOCKS = 1 + (BSIZE - 16) // 4      # the header must hold every block number

# inode types
T_FREE, T_DIR, T_FILE, T_DEV = 0, 1, 2, 3
TYPE_NAMES = {T_DIR: "directory", T_FILE: "file", T_DEV: "device"}

NAME_MAX = 60
PATH_MAX = 4096


# --- superblock ------------------------------------------------------------------------

_SB = struct.Struct("<8s10I")   # magic, version, bsize, size, ninodes, nlog, logstart,
#                                 inodestart, bmapstart, datastart, crc


@dataclass(frozen=True)
class Superblock:
    size: int           # blocks in the file system (the device may be larger)
    ninodes: int
    nlog: int           # log blocks including the header
    logstart: int
    inodestart: int
    bmapstart: int
    datastart: int

    @property
    def ninodeblocks(self) -> int:
        return self.bmapstart - self.inodestart

    @property
    def nbitmap(self) -> int:
        return self.datastart - self.bmapstart

    @property
    def logsize(self) -> int:
        """Blocks one transaction may hold (the header excluded)."""
        return self.nlog - 1

    @classmethod
    def geometry(cls, size: int, ninodes: int, nlog: int) -> "Superblock":
        """The layout mkfs writes for a device of `size` blocks."""
        ninodeblocks = -(-ninodes // INODES_PER_BLOCK)
        logstart = 2
        inodestart = logstart + nlog
        bmapstart = inodestart + ninodeblocks
        datastart = bmapstart + -(-size // BPB)
        return cls(size, ninodeblocks * INODES_PER_BLOCK, nlog, logstart, inodestart,
                   bmapstart, datastart)

    def pack(self) -> bytes:
        body = _SB.pack(MAGIC, VERSION, BSIZE, self.size, self.ninodes, self.nlog,
                        self.logstart, self.inodestart, self.bmapstart, self.datastart, 0)
        crc = zlib.crc32(body[:-4])
        return (body[:-4] + struct.pack("<I", crc)).ljust(BSIZE, b"\0")

    @classmethod
    def unpack(cls, block: bytes, device_blocks: int) -> "Superblock":
        """Parse and check block 1: NotRv6Error for a foreign image or another version,
        CorruptionError for ours but damaged."""
        (magic, version, bsize, size, ninodes, nlog, logstart, inodestart, bmapstart,
         datastart, crc) = _SB.unpack_from(block)
        if magic != MAGIC:
            raise NotRv6Error("not an Rv6 file system: block 1 has no Rv6 superblock magic")
        if version != VERSION:
            raise NotRv6Error(f"Rv6 file system version {version}; this code reads version {VERSION}")
        if zlib.crc32(block[:_SB.size - 4]) != crc:
            raise CorruptionError("the superblock is damaged (checksum mismatch)")
        if bsize != BSIZE:
            raise CorruptionError(f"superblock says {bsize}-byte blocks; Rv6 uses {BSIZE}")
        sb = cls(size, ninodes, nlog, logstart, inodestart, bmapstart, datastart)
        want = cls.geometry(size, ninodes, nlog)
        if sb != want or not (MIN_LOG_BLOCKS <= nlog <= MAX_LOG_BLOCKS) or ninodes < 2 \
                or datastart >= size:
            raise CorruptionError(f"the superblock's geometry is inconsistent: {sb}")
        if size > device_blocks:
            raise CorruptionError(f"the file system has {size} blocks but the device only "
                                  f"{device_blocks} (a truncated image?)")
        return sb


# --- inodes ----------------------------------------------------------------------------

# type, nlink, major, minor, mode, uid, gid, nblocks, size, atime, mtime, ctime,
# addrs[NDIRECT + 2], crc
_DINODE = struct.Struct(f"<4H4IQ3q{NDIRECT + 2}II")
INODE_SIZE = _DINODE.size
assert INODE_SIZE == 128 and BSIZE % INODE_SIZE == 0
INODES_PER_BLOCK = BSIZE // INODE_SIZE
IND = NDIRECT            # index of the indirect pointer in addrs
DIND = NDIRECT + 1       # index of the double-indirect pointer
FREE_INODE = bytes(INODE_SIZE)


@dataclass
class Dinode:
    """An inode as stored: a free inode is all zero bytes."""
    type: int = T_FREE
    nlink: int = 0
    major: int = 0
    minor: int = 0
    mode: int = 0           # permission bits (07777); the type is `type`
    uid: int = 0
    gid: int = 0
    nblocks: int = 0        # blocks held, data and index, for st_blocks and fsck
    size: int = 0
    atime: int = 0          # ns since the epoch
    mtime: int = 0
    ctime: int = 0
    addrs: list[int] = field(default_factory=lambda: [0] * (NDIRECT + 2))

    def pack(self) -> bytes:
        if self.type == T_FREE:
            return FREE_INODE
        body = _DINODE.pack(self.type, self.nlink, self.major, self.minor, self.mode,
                            self.uid, self.gid, self.nblocks, self.size, self.atime,
                            self.mtime, self.ctime, *self.addrs, 0)
        return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))

    @classmethod
    def unpack(cls, raw: bytes, inum: int) -> "Dinode":
        if raw == FREE_INODE:
            return cls()
        v = _DINODE.unpack(raw)
        if zlib.crc32(raw[:-4]) != v[-1]:
            raise CorruptionError(f"inode {inum} is damaged (checksum mismatch)")
        d = cls(*v[:12], addrs=list(v[12:-1]))
        if d.type not in TYPE_NAMES:
            raise CorruptionError(f"inode {inum} has unknown type {d.type}")
        if d.size > MAXFILE:
            raise CorruptionError(f"inode {inum} claims {d.size} bytes, over the {MAXFILE} maximum")
        return d


def inode_block(sb: Superblock, inum: int) -> int:
    return sb.inodestart + inum // INODES_PER_BLOCK


def inode_offset(inum: int) -> int:
    return (inum % INODES_PER_BLOCK) * INODE_SIZE


# --- directories -----------------------------------------------------------------------

DIRENT = np.dtype([("inum", "<u4"), ("name", f"S{NAME_MAX}")])
DIRENT_SIZE = DIRENT.itemsize
assert DIRENT_SIZE == 64
DIRENTS_PER_BLOCK = BSIZE // DIRENT_SIZE


def pack_dirent(inum: int, name: bytes) -> bytes:
    return np.array([(inum, name)], dtype=DIRENT).tobytes()


# --- log header ------------------------------------------------------------------------

_LOGHDR = struct.Struct("<4sIII")   # magic, n, crc of the logged blocks, crc of the header
LOG_MAGIC = b"RLOG"


def crc_blocks(blocks) -> int:
    """CRC32 over the log copies of a transaction, in log order."""
    crc = 0
    for b in blocks:
        crc = zlib.crc32(b, crc)
    return crc


def pack_log_header(homes: list[int], data=()) -> bytes:
    """The header naming `homes`; `data` are the log copies (their CRC goes in too, so a
    damaged log block is found at recovery instead of being installed)."""
    nums = struct.pack(f"<{len(homes)}I", *homes)
    dcrc = crc_blocks(data)
    crc = zlib.crc32(struct.pack("<II", len(homes), dcrc) + nums)
    return (_LOGHDR.pack(LOG_MAGIC, len(homes), dcrc, crc) + nums).ljust(BSIZE, b"\0")


def log_data_crc(block: bytes) -> int:
    return _LOGHDR.unpack_from(block)[2]


def unpack_log_header(block: bytes, sb: Superblock) -> list[int]:
    """The home block numbers of the committed transaction in the log ([] if none);
    CorruptionError if the header is damaged or names a block it may not."""
    magic, n, dcrc, crc = _LOGHDR.unpack_from(block)
    if magic != LOG_MAGIC:
        raise CorruptionError("the log header is damaged (no log magic)")
    if n > sb.logsize:
        raise CorruptionError(f"the log header lists {n} blocks; the log holds {sb.logsize}")
    nums = block[_LOGHDR.size:_LOGHDR.size + 4 * n]
    if zlib.crc32(struct.pack("<II", n, dcrc) + nums) != crc:
        raise CorruptionError("the log header is damaged (checksum mismatch)")
    blocks = list(struct.unpack(f"<{n}I", nums))
    for b in blocks:
        # only inode, bitmap and data blocks are logged: never the log or the superblock
        if not sb.inodestart <= b < sb.size:
            raise CorruptionError(f"the log header names block {b}, outside inodes/bitmap/data")
    return blocks
