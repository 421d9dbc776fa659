"""The `python-fuse` peer of `redleaf bench fs`: the minimal in-memory FUSE file system a
Python user would write with mfusepy (one dict of paths, each file a bytearray), mounted
by `python -m redleaf.bench.pyfuse_peer DIR` in the foreground until unmounted.

It does what the benchmark's loops need and no more: a flat or nested tree of regular
files and directories, create/open/read/write/truncate/unlink/mkdir/rmdir/stat/readdir.
Same mount options as `redleaf mount` (rv6/fuse_mount.py: foreground, one thread, no
attribute or entry caching in the kernel), so
the two FUSE systems differ only in what is behind the operations.
"""

from __future__ import annotations

import errno
import os
import stat as st
import sys
import time

import mfusepy


class MemFs(mfusepy.Operations):
    use_ns = True

    def __init__(self):
        now = time.time_ns()
        self.attrs = {"/": dict(st_mode=st.S_IFDIR | 0o755, st_nlink=2, st_size=0,
                                st_atime=now, st_mtime=now, st_ctime=now)}
        self.data: dict[str, bytearray] = {}

    def _get(self, path):
        a = self.attrs.get(path)
        if a is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return a

    def getattr(self, path, fh=None):
        a = dict(self._get(path))
        if path in self.data:
            a["st_size"] = len(self.data[path])
        return a

    def readdir(self, path, fh):
        pre = path.rstrip("/") + "/"
        names = {p[len(pre):] for p in self.attrs if p != path and p.startswith(pre) and "/" not in p[len(pre):]}
        return [".", "..", *sorted(names)]

    def create(self, path, mode, fi=None):
        now = time.time_ns()
        self.attrs[path] = dict(st_mode=st.S_IFREG | mode, st_nlink=1, st_size=0,
                                st_atime=now, st_mtime=now, st_ctime=now)
        self.data[path] = bytearray()
        return 0

    def mkdir(self, path, mode):
        now = time.time_ns()
        self.attrs[path] = dict(st_mode=st.S_IFDIR | mode, st_nlink=2, st_size=0,
                                st_atime=now, st_mtime=now, st_ctime=now)

    def open(self, path, flags):
        self._get(path)
        return 0

    def read(self, path, size, offset, fh):
        return bytes(self.data[path][offset:offset + size])

    def write(self, path, data, offset, fh):
        buf = self.data[path]
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data
        return len(data)

    def truncate(self, path, length, fh=None):
        buf = self.data[path]
        if length < len(buf):
            del buf[length:]
        else:
            buf.extend(bytes(length - len(buf)))

    def unlink(self, path):
        self._get(path)
        del self.attrs[path]
        self.data.pop(path, None)

    def rmdir(self, path):
        if self.readdir(path, 0)[2:]:
            raise mfusepy.FuseOSError(errno.ENOTEMPTY)
        del self.attrs[path]

    def utimens(self, path, times=None):
        return 0

    def chmod(self, path, mode):
        return 0

    def statfs(self, path):
        return dict(f_bsize=4096, f_frsize=4096, f_blocks=1 << 20, f_bfree=1 << 19, f_bavail=1 << 19,
                    f_files=1 << 20, f_ffree=1 << 19, f_namemax=255)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: python -m redleaf.bench.pyfuse_peer DIR", file=sys.stderr)
        return 2
    mfusepy.FUSE(MemFs(), argv[0], foreground=True, nothreads=True, default_permissions=True,
                 fsname="pyfuse-peer", attr_timeout=0, entry_timeout=0, negative_timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
