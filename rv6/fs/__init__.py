"""Rv6's file system: xv6's layers, one a file, each pure logic over a block device
(sans-I/O: no processes, no clock, no I/O but the device's read/write/flush).

    errors  FsError (a POSIX errno and a message), CorruptionError, NotRv6Error, DiskError
    disk    the block-device protocol; an in-memory device (records writes and flushes
            for crash tests) and one over an image file
    format  the on-disk layouts: superblock, inode, directory entry, log header
    bcache  LRU block cache; buffers pinned while a transaction holds them
    log     write-ahead log: begin_op/end_op group commit, commit, install, recovery
    inode   inodes, the block map (direct, indirect, double-indirect), the bitmap allocator
    dir     directories of fixed-size entries
    path    path lookup, absolute or from a cwd inode
    file    open files: offsets, flags, descriptor numbers, transaction-sized writes
    fs      FileSystem: the path- and handle-based API that ties them
    mkfs, fsck  the offline tools on an image file

Calls run only downward in that list.
"""
