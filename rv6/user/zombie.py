"""zombie: spawn a child that outlives its parent, and exit without waiting for it: the
child is re-parented to init, which reaps it (xv6's zombie). The child writes
"zombie: orphan PID done" to stdout when it ends, so a test sees it ran to completion."""

from redleaf.rv6 import ulib

ORPHAN_MS = 200


def main(argv):
    if len(argv) > 1 and argv[1] == "-orphan":
        ulib.sleep(ORPHAN_MS)
        ulib.printf("zombie: orphan %d done\n", ulib.getpid())
        return 0
    pid = ulib.spawn("/bin/zombie", ["zombie", "-orphan"])
    ulib.printf("zombie: parent %d leaves child %d\n", ulib.getpid(), pid)
    return 0
