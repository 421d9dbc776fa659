"""head [-n N] [FILE...]: the first N lines (default 10) of each file, or of stdin."""


from redleaf.rv6 import ulib


CHUNK = 4096


def head(fd, n):
    left = n
    while left > 0:
        data = ulib.read(fd, CHUNK)
        if not data:
            return
        cut = 0
        while left > 0:
            i = data.find(b"\n", cut)
            if i < 0:
                cut = len(data)
                break
            cut = i + 1
            left -= 1
        ulib.write(1, data[:cut])


def main(argv):
    args = argv[1:]
    n = 10
    if args and args[0] == "-n":
        if len(args) < 2:
            ulib.fprintf(2, "usage: head [-n N] [FILE...]\n")
            return 2
        args = args[1:]
        try:
            n = int(args.pop(0))
        except ValueError:
            n = -1
        if n < 0:
            ulib.fprintf(2, "head: -n takes a count >= 0\n")
            return 2
    elif args and args[0].startswith("-n") and args[0][2:].isdigit():
        n = int(args.pop(0)[2:])
    if not args:
        head(0, n)
        return 0
    status = 0
    for i, path in enumerate(args):
        try:
            fd = ulib.open(path, ulib.O_RDONLY)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "head: cannot open %s: %s\n", path, e.strerror)
            status = 1
            continue
        try:
            if len(args) > 1:
                ulib.printf("%s==> %s <==\n", "\n" if i else "", path)
            head(fd, n)
        finally:
            ulib.close(fd)
    return status
