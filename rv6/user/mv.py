"""mv SRC DST: rename SRC to DST (into it, when DST is a directory); atomic."""

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) != 3:
        ulib.fprintf(2, "usage: mv SRC DST\n")
        return 2
    src, dst = argv[1], argv[2]
    try:
        if ulib.stat(dst).type == ulib.T_DIR:
            dst = dst.rstrip("/") + "/" + src.rstrip("/").rsplit("/", 1)[-1]
    except ulib.Rv6Error:
        pass
    try:
        ulib.rename(src, dst)
    except ulib.Rv6Error as e:
        ulib.fprintf(2, "mv: %s -> %s: %s\n", src, dst, e.strerror)
        return 1
    return 0
