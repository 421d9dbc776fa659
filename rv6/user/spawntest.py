"""spawntest [N]: xv6's forktest with spawn. Spawn children (each exits at once) until the
kernel says EAGAIN or N (default 100) are spawned, wait for every one, then check that
one more wait says ECHILD. Prints "spawntest: OK (K children)"; status 1 on a failure."""

import errno

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) > 1 and argv[1] == "-child":
        return 0
    n = int(argv[1]) if len(argv) > 1 else 100
    pids = set()
    for _ in range(n):
        try:
            pids.add(ulib.spawn("/bin/spawntest", ["spawntest", "-child"]))
        except ulib.Rv6Error as e:
            if e.errno == errno.EAGAIN:
                break
            ulib.fprintf(2, "spawntest: spawn failed: %s\n", e.strerror)
            return 1
    if not pids:
        ulib.fprintf(2, "spawntest: no child could be spawned\n")
        return 1
    count = len(pids)
    for _ in range(count):
        try:
            pid, status = ulib.wait()
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "spawntest: wait stopped early: %s\n", e.strerror)
            return 1
        if pid not in pids or status != 0:
            ulib.fprintf(2, "spawntest: wait gave pid %d status %d\n", pid, status)
            return 1
        pids.discard(pid)
    try:
        ulib.wait()
    except ulib.Rv6Error as e:
        if e.errno != errno.ECHILD:
            raise
    else:
        ulib.fprintf(2, "spawntest: wait found an extra child\n")
        return 1
    ulib.printf("spawntest: OK (%d children)\n", count)
    return 0
