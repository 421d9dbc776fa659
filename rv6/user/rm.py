"""rm [-r] [-f] PATH...: remove each file; -r removes directories and what they hold,
-f says nothing about (and does not fail on) paths that do not exist."""

import errno

from redleaf.rv6 import ulib


def remove(path, recursive):
    s = ulib.stat(path)
    if s.type == ulib.T_DIR:
        if not recursive:
            raise ulib.Rv6Error(errno.EISDIR, "is a directory (use -r)")
        base = path.rstrip("/") + "/"
        for name, _ino, _type in ulib.readdir(path):
            if name not in (".", ".."):
                remove(base + name, True)
        ulib.rmdir(path)
    else:
        ulib.unlink(path)


def main(argv):
    args = argv[1:]
    recursive = force = False
    while args and args[0].startswith("-") and len(args[0]) > 1:
        for c in args.pop(0)[1:]:
            if c == "r":
                recursive = True
            elif c == "f":
                force = True
            else:
                ulib.fprintf(2, "rm: unknown option -%s\nusage: rm [-r] [-f] PATH...\n", c)
                return 2
    if not args and not force:
        ulib.fprintf(2, "usage: rm [-r] [-f] PATH...\n")
        return 2
    status = 0
    for path in args:
        try:
            remove(path, recursive)
        except ulib.Rv6Error as e:
            if force and e.errno == errno.ENOENT:
                continue
            ulib.fprintf(2, "rm: %s: %s\n", path, e.strerror)
            status = 1
    return status
