"""stressfs [N]: xv6's stressfs. N children (default 4) at once each write 20 blocks of
512 bytes to stressfsI, then read them back and check them, then remove the file.
Prints "stressfs: ok"; status 1 if a child failed."""

from redleaf.rv6 import ulib

BLOCKS = 20
BS = 512


def child(i):
    name = "stressfs%d" % i
    block = bytes([ord("a") + i % 26]) * BS
    fd = ulib.open(name, ulib.O_CREATE | ulib.O_RDWR | ulib.O_TRUNC)
    for _ in range(BLOCKS):
        ulib.write(fd, block)
    ulib.close(fd)
    fd = ulib.open(name, ulib.O_RDONLY)
    for b in range(BLOCKS):
        got = ulib.read(fd, BS)
        if got != block:
            ulib.fprintf(2, "stressfs: %s block %d reads back wrong\n", name, b)
            return 1
    ulib.close(fd)
    ulib.unlink(name)
    return 0


def main(argv):
    if len(argv) > 2 and argv[1] == "-child":
        return child(int(argv[2]))
    n = int(argv[1]) if len(argv) > 1 else 4
    ulib.printf("stressfs starting\n")
    pids = [ulib.spawn("/bin/stressfs", ["stressfs", "-child", str(i)]) for i in range(n)]
    bad = 0
    for pid in pids:
        _, status = ulib.wait(pid)
        bad += status != 0
    if bad:
        ulib.printf("stressfs: %d children failed\n", bad)
        return 1
    ulib.printf("stressfs: ok\n")
    return 0
