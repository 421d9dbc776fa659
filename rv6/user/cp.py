"""cp SRC DST: copy the file SRC to DST (into it, when DST is a directory)."""

from redleaf.rv6 import ulib

CHUNK = 65536


def main(argv):
    if len(argv) != 3:
        ulib.fprintf(2, "usage: cp SRC DST\n")
        return 2
    src, dst = argv[1], argv[2]
    try:
        if ulib.stat(dst).type == ulib.T_DIR:
            dst = dst.rstrip("/") + "/" + src.rstrip("/").rsplit("/", 1)[-1]
    except ulib.Rv6Error:
        pass            # DST does not exist yet: it is the new file's name
    try:
        fin = ulib.open(src, ulib.O_RDONLY)
    except ulib.Rv6Error as e:
        ulib.fprintf(2, "cp: cannot open %s: %s\n", src, e.strerror)
        return 1
    try:
        if ulib.fstat(fin).type == ulib.T_DIR:
            ulib.fprintf(2, "cp: %s is a directory\n", src)
            return 1
        try:
            fout = ulib.open(dst, ulib.O_WRONLY | ulib.O_CREATE | ulib.O_TRUNC)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "cp: cannot create %s: %s\n", dst, e.strerror)
            return 1
        try:
            while True:
                data = ulib.read(fin, CHUNK)
                if not data:
                    break
                ulib.write(fout, data)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "cp: %s -> %s: %s\n", src, dst, e.strerror)
            return 1
        finally:
            ulib.close(fout)
    finally:
        ulib.close(fin)
    return 0
