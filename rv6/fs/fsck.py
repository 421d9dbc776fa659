"""fsck: check an Rv6 image offline (calls the format and the disk; it never writes).

    fsck(path) -> list[Problem]                 an image file
    fsck_device(dev) -> FsckReport              any block device
    python -m redleaf.rv6.fs.fsck IMAGE [--json]    exit 0 clean, 1 problems, 2 unreadable

It reads the image with its own parser, independent of the layers that wrote it, and
checks: the superblock; the log header (a committed transaction is replayed into an
in-memory overlay, never onto the image, and the result is what is checked, since that is
what the next mount sees); every inode's fields and checksum; that every block is mapped
once and only inside the data area, by a file whose size covers it; that the bitmap marks
exactly the metadata and the mapped blocks; from the root down, that each directory's
entries are legal, point at allocated inodes, and hold "." (itself) and ".." (its parent);
that no directory has two parents; that every link count equals the entries naming the
inode. An allocated inode with no link and no name is an orphan a crash left between
unlink and free: the next mount frees it, so it is reported as a warning.

Every pointer is range-checked before it is followed and no block is followed twice, so
garbage costs at most one read per block of the image: fsck never crashes or hangs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from .disk import BlockDevice, FileDisk
from .errors import CorruptionError, FsError, NotRv6Error
from .format import (BSIZE, DIND, DIRENT, DIRENT_SIZE, FREE_INODE, IND, INODE_SIZE,
                     INODES_PER_BLOCK, NDIRECT, NINDIRECT, ROOTINO, T_DEV, T_DIR,
                     TYPE_NAMES, Dinode, Superblock, crc_blocks, log_data_crc,
                     unpack_log_header)


@dataclass(frozen=True)
class Problem:
    kind: str               # superblock, log, inode, block, bitmap, directory, links, orphan
    message: str
    inum: int | None = None
    block: int | None = None
    severity: str = "error"     # "warning": the next mount repairs it (orphans)

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind}: {self.message}"


@dataclass
class FsckReport:
    problems: list[Problem] = field(default_factory=list)
    log_replayed: int = 0       # blocks of a committed transaction checked as replayed
    inodes_used: int = 0
    blocks_used: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def clean(self) -> bool:
        return not self.errors


class _Checker:
    def __init__(self, dev: BlockDevice):
        self.dev = dev
        self.r = FsckReport()
        self.overlay: dict[int, bytes] = {}

    def problem(self, kind: str, msg: str, inum=None, block=None, severity="error") -> None:
        self.r.problems.append(Problem(kind, msg, inum, block, severity))

    def read(self, bno: int) -> bytes:
        got = self.overlay.get(bno)
        return got if got is not None else self.dev.read_block(bno)

    def run(self) -> FsckReport:
        dev = self.dev
        if dev.nblocks < 2:
            self.problem("superblock", f"the image has {dev.nblocks} blocks; no superblock fits")
            return self.r
        try:
            self.sb = sb = Superblock.unpack(dev.read_block(1), dev.nblocks)
        except (NotRv6Error, CorruptionError) as e:
            self.problem("superblock", e.strerror)
            return self.r
        try:
            hdr = dev.read_block(sb.logstart)
            homes = unpack_log_header(hdr, sb)
        except CorruptionError as e:
            self.problem("log", e.strerror + " (checked as if the log were empty)", block=sb.logstart)
            homes = []
        copies = [dev.read_block(sb.logstart + 1 + i) for i in range(len(homes))]
        if homes and crc_blocks(copies) != log_data_crc(hdr):
            self.problem("log", "the log's committed blocks do not match the header's checksum; "
                                "mount refuses them (checked as if the log were empty)", block=sb.logstart)
            homes = copies = []
        for home, copy in zip(homes, copies):
            self.overlay[home] = copy
        self.r.log_replayed = len(homes)
        self.inodes = self.check_inodes()
        self.check_bitmap()
        self.check_tree()
        return self.r

    # --- inodes and their blocks ---------------------------------------------------------

    def check_inodes(self) -> dict[int, Dinode]:
        sb = self.sb
        self.owner: dict[int, int] = {}             # block -> inode mapping it
        self.dirblocks: dict[int, dict[int, int]] = {}   # dir inode -> {file block: block}
        inodes: dict[int, Dinode] = {}
        for blk in range(sb.ninodeblocks):
            raw = self.read(sb.inodestart + blk)
            for j in range(INODES_PER_BLOCK):
                inum = blk * INODES_PER_BLOCK + j
                chunk = raw[j * INODE_SIZE:(j + 1) * INODE_SIZE]
                if chunk == FREE_INODE:
                    continue
                if inum == 0:
                    self.problem("inode", "inode 0 (never used) is not zero", 0)
                    continue
                try:
                    d = Dinode.unpack(chunk, inum)
                except CorruptionError as e:
                    self.problem("inode", e.strerror, inum)
                    continue
                inodes[inum] = d
                self.check_blocks(inum, d)
        self.r.inodes_used = len(inodes)
        return inodes

    def claim(self, inum: int, bno: int, what: str) -> bool:
        """Record that `inum` maps `bno`; False (and a problem) if it may not be followed."""
        sb = self.sb
        if not sb.datastart <= bno < sb.size:
            self.problem("block", f"inode {inum} {what} points at block {bno}, outside the data "
                                  f"area {sb.datastart}..{sb.size - 1}", inum, bno)
            return False
        other = self.owner.get(bno)
        if other is not None:
            self.problem("block", f"block {bno} is mapped twice: by inode {other} and by inode "
                                  f"{inum} ({what})", inum, bno)
            return False
        self.owner[bno] = inum
        return True

    def check_blocks(self, inum: int, d: Dinode) -> None:
        data: dict[int, int] = {}
        count = 0

        def entries(bno: int) -> np.ndarray:
            return np.frombuffer(self.read(bno), "<u4")

        for i in range(NDIRECT):
            if d.addrs[i] and self.claim(inum, d.addrs[i], f"direct block {i}"):
                data[i] = d.addrs[i]
                count += 1
        if d.addrs[IND] and self.claim(inum, d.addrs[IND], "indirect block"):
            count += 1
            ind = entries(d.addrs[IND])
            for i in np.flatnonzero(ind):
                b = int(ind[i])
                if self.claim(inum, b, f"file block {NDIRECT + int(i)}"):
                    data[NDIRECT + int(i)] = b
                    count += 1
        if d.addrs[DIND] and self.claim(inum, d.addrs[DIND], "double-indirect block"):
            count += 1
            top = entries(d.addrs[DIND]).copy()
            for ci in np.flatnonzero(top):
                child = int(top[ci])
                if not self.claim(inum, child, f"double-indirect child {int(ci)}"):
                    continue
                count += 1
                kids = entries(child).copy()
                for ei in np.flatnonzero(kids):
                    bn = NDIRECT + NINDIRECT + int(ci) * NINDIRECT + int(ei)
                    b = int(kids[ei])
                    if self.claim(inum, b, f"file block {bn}"):
                        data[bn] = b
                        count += 1
        if count != d.nblocks:
            self.problem("inode", f"inode {inum} counts {d.nblocks} blocks but maps {count}", inum)
        past = [bn for bn in data if bn * BSIZE >= d.size]
        if past:
            self.problem("inode", f"inode {inum} is {d.size} bytes but maps file block {min(past)}"
                                  f" (and {len(past) - 1} more) past its end", inum)
        if d.type == T_DEV and count:
            self.problem("inode", f"device inode {inum} maps {count} blocks", inum)
        if d.type == T_DIR:
            self.dirblocks[inum] = data

    # --- bitmap --------------------------------------------------------------------------

    def check_bitmap(self) -> None:
        sb = self.sb
        raw = b"".join(self.read(sb.bmapstart + i) for i in range(sb.nbitmap))
        bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:sb.size].astype(bool)
        meta_free = np.flatnonzero(~bits[:sb.datastart])
        if meta_free.size:
            self.problem("bitmap", f"{meta_free.size} metadata blocks are marked free "
                                   f"(first: {int(meta_free[0])})", block=int(meta_free[0]))
        mapped = np.zeros(sb.size, bool)
        if self.owner:
            mapped[np.fromiter(self.owner, np.int64, len(self.owner))] = True
        mapped[:sb.datastart] = True
        lost = np.flatnonzero((mapped & ~bits)[sb.datastart:]) + sb.datastart
        for b in lost[:50]:
            self.problem("bitmap", f"block {int(b)} is mapped by inode {self.owner[int(b)]} but "
                                   "free in the bitmap", self.owner[int(b)], int(b))
        if lost.size > 50:
            self.problem("bitmap", f"... and {lost.size - 50} more mapped blocks free in the bitmap")
        leaked = np.flatnonzero(bits & ~mapped)
        for b in leaked[:50]:
            self.problem("bitmap", f"block {int(b)} is marked in use but no inode maps it", block=int(b))
        if leaked.size > 50:
            self.problem("bitmap", f"... and {leaked.size - 50} more unmapped blocks marked in use")
        self.r.blocks_used = int(np.count_nonzero(bits[sb.datastart:]))

    # --- the tree ------------------------------------------------------------------------

    def dir_entries(self, inum: int, d: Dinode) -> list[tuple[bytes, int]]:
        if d.size % DIRENT_SIZE:
            self.problem("directory", f"directory {inum} is {d.size} bytes, not a whole number "
                                      f"of {DIRENT_SIZE}-byte entries", inum)
        blocks = self.dirblocks.get(inum, {})
        out = []
        for bn in range(-(-d.size // BSIZE)):
            if bn not in blocks:
                self.problem("directory", f"directory {inum} has a hole at block {bn}", inum)
                continue
            ents = np.frombuffer(self.read(blocks[bn]), DIRENT)
            n = min(len(ents), (d.size - bn * BSIZE) // DIRENT_SIZE)
            for i in np.flatnonzero(ents["inum"][:n]):
                out.append((bytes(ents["name"][i]), int(ents["inum"][i])))
        return out

    def check_tree(self) -> None:
        inodes = self.inodes
        root = inodes.get(ROOTINO)
        if root is None or root.type != T_DIR:
            self.problem("directory", "inode 1 (the root) is not an allocated directory", ROOTINO)
            return
        refs: dict[int, int] = {}
        parent_of: dict[int, int] = {ROOTINO: ROOTINO}
        queue = [ROOTINO]
        while queue:
            dnum = queue.pop()
            names: set[bytes] = set()
            dot = dotdot = None
            for name, inum in self.dir_entries(dnum, inodes[dnum]):
                shown = name.decode("utf-8", "replace")
                if not name or b"/" in name or b"\0" in name:
                    self.problem("directory", f"directory {dnum} has an illegal name {name!r}", dnum)
                    continue
                if name in names:
                    self.problem("directory", f"directory {dnum} has {shown!r} twice", dnum)
                names.add(name)
                if inum >= self.sb.ninodes or inum not in inodes:
                    self.problem("directory", f"directory {dnum} entry {shown!r} points at "
                                              f"{'free' if inum < self.sb.ninodes else 'out-of-range'} "
                                              f"inode {inum}", dnum)
                    continue
                refs[inum] = refs.get(inum, 0) + 1
                if name == b".":
                    dot = inum
                elif name == b"..":
                    dotdot = inum
                elif inodes[inum].type == T_DIR:
                    if inum in parent_of:
                        self.problem("directory", f"directory {inum} has a second parent: "
                                                  f"{dnum} (as {shown!r}) besides {parent_of[inum]}", inum)
                    else:
                        parent_of[inum] = dnum
                        queue.append(inum)
            if dot != dnum:
                self.problem("directory", f"directory {dnum}: '.' is {dot}, not itself", dnum)
            if dotdot != parent_of[dnum]:
                self.problem("directory", f"directory {dnum}: '..' is {dotdot}, not its parent "
                                          f"{parent_of[dnum]}", dnum)
        for inum, d in sorted(inodes.items()):
            n = refs.get(inum, 0)
            if n == 0 and d.nlink == 0:
                self.problem("orphan", f"inode {inum} ({TYPE_NAMES[d.type]}) has no links; "
                                       "the next mount frees it", inum, severity="warning")
            elif n == 0:
                self.problem("links", f"inode {inum} ({TYPE_NAMES[d.type]}) has {d.nlink} links "
                                      "but no directory names it", inum)
            elif n != d.nlink:
                self.problem("links", f"inode {inum} ({TYPE_NAMES[d.type]}) has link count "
                                      f"{d.nlink} but {n} directory entries name it", inum)


def fsck_device(dev: BlockDevice) -> FsckReport:
    return _Checker(dev).run()


def fsck(path: str | os.PathLike) -> list[Problem]:
    """Every problem found in the image file (warnings included); [] when clean."""
    with FileDisk(path, readonly=True) as dev:
        return fsck_device(dev).problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m redleaf.rv6.fs.fsck",
                                 description="Check an Rv6 file-system image (read-only).")
    ap.add_argument("image")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        with FileDisk(a.image, readonly=True) as dev:
            r = fsck_device(dev)
    except FsError as e:
        print(f"fsck: {a.image}: {e.strerror}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({"image": os.fspath(a.image), "clean": r.clean,
                          "log_replayed": r.log_replayed, "inodes_used": r.inodes_used,
                          "blocks_used": r.blocks_used,
                          "problems": [asdict(p) for p in r.problems]}))
    else:
        for p in r.problems:
            print(f"{a.image}: {p}")
        if r.log_replayed:
            print(f"{a.image}: the log holds a committed transaction of {r.log_replayed} blocks "
                  "(checked as replayed; the next mount installs it)")
        print(f"{a.image}: {'clean' if r.clean else f'{len(r.errors)} errors'}, "
              f"{r.inodes_used} inodes and {r.blocks_used} data blocks in use")
    return 0 if r.clean else 1


if __name__ == "__main__":
    sys.exit(main())
