"""The file system's exceptions, shared by every layer (it calls nothing).

`FsError` is an OSError carrying a POSIX errno, so a FUSE or system-call shell can hand
`e.errno` straight to its caller; its message says what is wrong in words. A damaged image
raises `CorruptionError` (EUCLEAN, Linux's "structure needs cleaning", as ext4 reports it)
and an image that is not ours, or of another version, `NotRv6Error` (EINVAL, as mount(2)
says for a wrong file-system type).
"""

from __future__ import annotations

import errno as _errno

EUCLEAN = getattr(_errno, "EUCLEAN", _errno.EIO)


class FsError(OSError):
    """A file-system call failed; `errno` says why in POSIX terms, the message in words."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)

    def __str__(self) -> str:
        return f"{self.strerror} ({_errno.errorcode.get(self.errno, self.errno)})"


class CorruptionError(FsError):
    """On-disk metadata is inconsistent (bad checksum, pointer out of range, ...)."""

    def __init__(self, message: str):
        super().__init__(EUCLEAN, message + "; run fsck")


class NotRv6Error(FsError):
    """The image has no Rv6 superblock, or one of a version this code does not read."""

    def __init__(self, message: str):
        super().__init__(_errno.EINVAL, message)


class DiskError(FsError):
    """The block device refused a request (out-of-range block, short image, I/O error)."""

    def __init__(self, message: str):
        super().__init__(_errno.EIO, message)
