"""ln OLD NEW: a second name (hard link) NEW for the file OLD."""

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) != 3:
        ulib.fprintf(2, "usage: ln OLD NEW\n")
        return 2
    try:
        ulib.link(argv[1], argv[2])
    except ulib.Rv6Error as e:
        ulib.fprintf(2, "ln: %s %s: %s\n", argv[1], argv[2], e.strerror)
        return 1
    return 0
