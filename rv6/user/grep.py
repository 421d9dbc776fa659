"""grep PATTERN [FILE...]: print the lines (of stdin when no file) matching PATTERN, a
Python regular expression (a superset of xv6's ^ $ . *), searched anywhere in the line.
Status 0 if a line matched, 1 if none did, 2 on an error (POSIX grep's)."""

import re

from redleaf.rv6 import ulib


CHUNK = 4096


def grep(rx, fd, prefix):
    found = False
    rest = b""
    while True:
        data = ulib.read(fd, CHUNK)
        buf = rest + data
        lines = buf.split(b"\n")
        rest = lines.pop() if data else b""
        if not data and lines and lines[-1] == b"":
            lines.pop()
        for line in lines:
            if rx.search(line):
                found = True
                ulib.write(1, prefix + line + b"\n")
        if not data:
            return found


def main(argv):
    if len(argv) < 2:
        ulib.fprintf(2, "usage: grep PATTERN [FILE...]\n")
        return 2
    try:
        rx = re.compile(argv[1].encode())
    except re.error as e:
        ulib.fprintf(2, "grep: bad pattern %r: %s\n", argv[1], e)
        return 2
    if len(argv) == 2:
        return 0 if grep(rx, 0, b"") else 1
    found, status = False, 0
    many = len(argv) > 3
    for path in argv[2:]:
        try:
            fd = ulib.open(path, ulib.O_RDONLY)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "grep: cannot open %s: %s\n", path, e.strerror)
            status = 2
            continue
        try:
            found |= grep(rx, fd, (path + ":").encode() if many else b"")
        finally:
            ulib.close(fd)
    return status or (0 if found else 1)
