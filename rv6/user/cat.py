"""cat [FILE...]: copy each file (stdin when none) to stdout. Status 1 if one could not be read."""


from redleaf.rv6 import ulib


CHUNK = 65536


def copy(fd):
    while True:
        data = ulib.read(fd, CHUNK)
        if not data:
            return
        ulib.write(1, data)


def main(argv):
    if len(argv) < 2:
        copy(0)
        return 0
    status = 0
    for path in argv[1:]:
        try:
            fd = ulib.open(path, ulib.O_RDONLY)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "cat: cannot open %s: %s\n", path, e.strerror)
            status = 1
            continue
        try:
            if ulib.fstat(fd).type == ulib.T_DIR:
                ulib.fprintf(2, "cat: %s: is a directory\n", path)
                status = 1
                continue
            copy(fd)
        finally:
            ulib.close(fd)
    return status
