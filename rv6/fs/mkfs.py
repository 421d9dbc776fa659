"""mkfs: write an empty Rv6 file system (the offline tool; calls the format and the disk).

    mkfs(path, size_bytes, inodes=None) -> MkfsInfo        an image file (made sparse)
    mkfs_device(dev, inodes=None, ...) -> MkfsInfo         any block device (tests: MemDisk)
    install_programs(fs) -> list[str]                      /bin/NAME for each rv6/user/NAME.py, /dev
    python -m redleaf.rv6.fs.mkfs IMAGE --size 64M [--inodes N] [--log-blocks N] [--no-programs] [--json]

The root directory (inode 1) holds "." and ".."; the bitmap marks every metadata block and
the root's block used; the log header is empty. The default is one inode per 16 KiB (as
mke2fs) and a log of three operations (1 + 3 * MAXOPBLOCKS blocks) on devices of 16 MiB or more.

With `programs` (the default of `mkfs` and of the command, off for `mkfs_device`, whose
callers in the fs tests want an empty tree), the user programs shipped as package data in
rv6/user/ are written into the new image as /bin/NAME (mode 0755, the source text: Rv6's
spawn loads Python source), and /dev is made for init's /dev/console. They are written
through the pure FileSystem (fs.py), so the image is a normal committed state of the log.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

from pathlib import Path

from .disk import BlockDevice, FileDisk
from .errors import FsError
from .format import (BPB, BSIZE, INODES_PER_BLOCK, MAX_LOG_BLOCKS, MAXOPBLOCKS,
                     MIN_LOG_BLOCKS, ROOTINO, T_DIR, Dinode, Superblock, inode_block,
                     inode_offset, pack_dirent, pack_log_header)

BYTES_PER_INODE = 16384
MIN_DATA_BLOCKS = 16
# rv6/user/*.py: package data of redleaf.rv6 (not a package: programs are files, not modules)
USER_DIR = Path(__file__).resolve().parent.parent / "user"
PROGRAM_MODE = 0o755


@dataclass(frozen=True)
class MkfsInfo:
    size_blocks: int
    block_size: int
    inodes: int
    log_blocks: int
    data_start: int
    data_blocks: int
    programs: int = 0       # programs installed in /bin

    def as_dict(self) -> dict:
        return asdict(self)


def _layout(nblocks: int, inodes: int | None, log_blocks: int | None) -> Superblock:
    if inodes is None:
        inodes = max(64, nblocks * BSIZE // BYTES_PER_INODE)
    if log_blocks is None:
        # room for several operations a transaction (group commit), less on tiny devices
        log_blocks = (1 + 3 * MAXOPBLOCKS if nblocks >= 4096 else
                      1 + 2 * MAXOPBLOCKS if nblocks >= 1024 else MIN_LOG_BLOCKS)
    if not MIN_LOG_BLOCKS <= log_blocks <= MAX_LOG_BLOCKS:
        raise FsError(errno.EINVAL, f"--log-blocks {log_blocks}: must be {MIN_LOG_BLOCKS}..{MAX_LOG_BLOCKS}")
    if not 2 <= inodes <= 2**31:
        raise FsError(errno.EINVAL, f"--inodes {inodes}: must be at least 2 (the root and one more)")
    sb = Superblock.geometry(nblocks, inodes, log_blocks)
    if sb.datastart + MIN_DATA_BLOCKS > nblocks:
        raise FsError(errno.ENOSPC, f"{nblocks} blocks of {BSIZE} bytes cannot hold the metadata "
                          f"({sb.datastart} blocks) and {MIN_DATA_BLOCKS} data blocks")
    return sb


def user_programs(src_dir: Path | None = None) -> dict[str, bytes]:
    """NAME -> source of every program shipped in rv6/user (sorted by name)."""
    d = USER_DIR if src_dir is None else Path(src_dir)
    if not d.is_dir():
        raise FsError(errno.ENOENT, f"{d}: the user programs are missing from this installation "
                                    "(package data redleaf.rv6 user/*.py); reinstall redleaf "
                                    "or pass --no-programs")
    return {p.stem: p.read_bytes() for p in sorted(d.glob("*.py"))}


def install_programs(fs, src_dir: Path | None = None) -> list[str]:
    """Write /bin/NAME for each user program and make /bin and /dev if missing; an
    existing /bin/NAME is replaced. `fs` is a mounted fs.FileSystem. The paths written."""
    for d in ("/bin", "/dev"):
        try:
            fs.mkdir(d, 0o755)
        except FsError as e:
            if e.errno != errno.EEXIST:
                raise
    written = []
    for name, src in user_programs(src_dir).items():
        path = f"/bin/{name}"
        fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PROGRAM_MODE)
        try:
            fs.write(fd, src)
        finally:
            fs.close(fd)
        fs.chmod(path, PROGRAM_MODE)
        written.append(path)
    fs.sync()
    return written


def mkfs_device(dev: BlockDevice, inodes: int | None = None, log_blocks: int | None = None,
                now_ns: int = 0, size_blocks: int | None = None, zeroed: bool = False,
                programs: bool = False) -> MkfsInfo:
    """Format `dev` (its first `size_blocks` blocks, default all). `zeroed`: the device
    reads zeros already, so the inode table and bitmap need not be written block by block.
    `programs`: install the user programs into /bin (see install_programs)."""
    if programs:
        progs = user_programs()         # refuse before formatting, not after
    else:
        progs = None
    sb = _layout(size_blocks or dev.nblocks, inodes, log_blocks)
    writes: dict[int, bytes] = {}
    if not zeroed:
        for b in range(sb.inodestart, sb.datastart):
            writes[b] = bytes(BSIZE)
    writes[0] = bytes(BSIZE)
    writes[1] = sb.pack()
    writes[sb.logstart] = pack_log_header([])
    root_block = sb.datastart
    root = Dinode(type=T_DIR, nlink=2, mode=0o755, nblocks=1, size=2 * 64,
                  atime=now_ns, mtime=now_ns, ctime=now_ns)
    root.addrs[0] = root_block
    ib = bytearray(writes.get(inode_block(sb, ROOTINO), bytes(BSIZE)))
    ib[inode_offset(ROOTINO):inode_offset(ROOTINO) + 128] = root.pack()
    writes[inode_block(sb, ROOTINO)] = bytes(ib)
    writes[root_block] = (pack_dirent(ROOTINO, b".") + pack_dirent(ROOTINO, b"..")).ljust(BSIZE, b"\0")
    used = root_block + 1           # blocks 0..root_block are in use
    for i in range(sb.nbitmap):
        bm = bytearray(BSIZE)
        lo = i * BPB
        n = max(0, min(BPB, used - lo))
        bm[:n // 8] = b"\xff" * (n // 8)
        if n % 8:
            bm[n // 8] = (1 << (n % 8)) - 1
        if any(bm) or not zeroed:
            writes[sb.bmapstart + i] = bytes(bm)
    dev.write_blocks(sorted(writes.items()))
    dev.flush()
    if progs is not None:
        from .fs import FileSystem
        clock = (lambda: now_ns) if now_ns else time.time_ns
        with FileSystem(dev, clock) as fs:
            installed = len(install_programs(fs))
    else:
        installed = 0
    return MkfsInfo(sb.size, BSIZE, sb.ninodes, sb.nlog, sb.datastart, sb.size - sb.datastart,
                    installed)


def mkfs(path: str | os.PathLike, size_bytes: int, inodes: int | None = None,
         log_blocks: int | None = None, now_ns: int | None = None,
         programs: bool = True) -> MkfsInfo:
    """Make (or remake) the image file `path` of `size_bytes` (rounded down to blocks) as
    a new Rv6 file system: the user programs in /bin unless `programs` is false. The file
    is sparse: only what is written takes space."""
    nblocks = size_bytes // BSIZE
    _layout(nblocks, inodes, log_blocks)        # refuse before touching the file
    with open(path, "wb") as f:                 # truncates: the old contents are gone
        f.truncate(nblocks * BSIZE)
    with FileDisk(path) as dev:
        return mkfs_device(dev, inodes, log_blocks,
                           time.time_ns() if now_ns is None else now_ns, zeroed=True,
                           programs=programs)


def parse_size(text: str) -> int:
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units and t[-1] != "" else (t, "")
    try:
        return int(float(num) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 64M, 1G, 1048576)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m redleaf.rv6.fs.mkfs",
                                 description="Make a new Rv6 file system (with the user programs in /bin) in an image file.")
    ap.add_argument("image")
    ap.add_argument("--size", type=parse_size, default=parse_size("64M"),
                    help="image size, with K/M/G suffixes (default 64M)")
    ap.add_argument("--inodes", type=int, default=None, help="number of inodes (default: one per 16 KiB)")
    ap.add_argument("--log-blocks", type=int, default=None, help="log size in blocks, header included")
    ap.add_argument("--no-programs", action="store_true",
                    help="leave the file system empty (no /bin with the user programs, no /dev)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        info = mkfs(a.image, a.size, a.inodes, a.log_blocks, programs=not a.no_programs)
    except (FsError, OSError) as e:
        print(f"mkfs: {a.image}: {e.strerror if isinstance(e, OSError) else e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(info.as_dict()))
    else:
        print(f"{a.image}: {info.size_blocks} blocks of {info.block_size} bytes, {info.inodes} inodes, "
              f"log {info.log_blocks} blocks, {info.data_blocks} data blocks from block {info.data_start}"
              + (f", {info.programs} programs in /bin" if info.programs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
