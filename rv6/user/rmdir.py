"""rmdir DIR...: remove each empty directory."""

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) < 2:
        ulib.fprintf(2, "usage: rmdir DIR...\n")
        return 2
    status = 0
    for path in argv[1:]:
        try:
            ulib.rmdir(path)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "rmdir: %s: %s\n", path, e.strerror)
            status = 1
    return status
