"""stat PATH...: every field of each path's Stat, one "name: value" a line."""


from redleaf.rv6 import ulib


TYPES = {1: "directory", 2: "file", 3: "device"}


def main(argv):
    if len(argv) < 2:
        ulib.fprintf(2, "usage: stat PATH...\n")
        return 2
    status = 0
    for path in argv[1:]:
        try:
            s = ulib.stat(path)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "stat: %s: %s\n", path, e.strerror)
            status = 1
            continue
        ulib.printf("file: %s\ntype: %d (%s)\nino: %d\nnlink: %d\nsize: %d\nmode: %o\nmtime_ns: %d\n",
                    path, s.type, TYPES.get(s.type, "?"), s.ino, s.nlink, s.size, s.mode, s.mtime_ns)
    return status
