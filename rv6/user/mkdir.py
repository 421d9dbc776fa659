"""mkdir DIR...: make each directory (its parent must exist)."""

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) < 2:
        ulib.fprintf(2, "usage: mkdir DIR...\n")
        return 2
    status = 0
    for path in argv[1:]:
        try:
            ulib.mkdir(path)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "mkdir: %s: %s\n", path, e.strerror)
            status = 1
    return status
