"""wc [FILE...]: lines, words and bytes of each file (of stdin when none), xv6's format:
"LINES WORDS BYTES NAME" (NAME empty for stdin)."""


from redleaf.rv6 import ulib


CHUNK = 65536
BLANK = b" \r\t\n\v"


def wc(fd, name):
    lines = words = nbytes = 0
    inword = False
    while True:
        data = ulib.read(fd, CHUNK)
        if not data:
            break
        nbytes += len(data)
        lines += data.count(b"\n")
        words += len(data.split())
        if inword and data[0] not in BLANK:
            words -= 1          # a word cut by the chunk boundary was counted twice
        inword = data[-1] not in BLANK
    ulib.printf("%d %d %d %s\n", lines, words, nbytes, name)


def main(argv):
    if len(argv) < 2:
        wc(0, "")
        return 0
    status = 0
    for path in argv[1:]:
        try:
            fd = ulib.open(path, ulib.O_RDONLY)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "wc: cannot open %s: %s\n", path, e.strerror)
            status = 1
            continue
        try:
            wc(fd, path)
        finally:
            ulib.close(fd)
    return status
