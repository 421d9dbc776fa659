"""touch FILE...: create each file that does not exist (empty). An existing file is left
as it is: the system-call set has no utimes, so its times cannot be set from here."""

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) < 2:
        ulib.fprintf(2, "usage: touch FILE...\n")
        return 2
    status = 0
    for path in argv[1:]:
        try:
            ulib.close(ulib.open(path, ulib.O_WRONLY | ulib.O_CREATE))
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "touch: %s: %s\n", path, e.strerror)
            status = 1
    return status
