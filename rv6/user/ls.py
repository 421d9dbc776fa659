"""ls [PATH...]: xv6's format, one line a name: NAME (padded to 14) TYPE INO SIZE, where
TYPE is 1 directory, 2 file, 3 device. A directory lists its entries, "." and ".." too."""


from redleaf.rv6 import ulib


DIRSIZ = 14


def line(name, s):
    ulib.printf("%s %d %d %d\n", name.ljust(DIRSIZ), s.type, s.ino, s.size)


def ls(path):
    s = ulib.stat(path)
    if s.type != ulib.T_DIR:
        line(path.rsplit("/", 1)[-1] or path, s)
        return
    base = path if path.endswith("/") else path + "/"
    for name, _ino, _type in ulib.readdir(path):
        line(name, ulib.stat(base + name))


def main(argv):
    status = 0
    for path in argv[1:] or ["."]:
        try:
            ls(path)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "ls: cannot stat %s: %s\n", path, e.strerror)
            status = 1
    return status
