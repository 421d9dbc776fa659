"""sh [-c LINE | FILE]: the Rv6 shell (grammar and executor in redleaf.rv6.shell).

Interactive: prompt "$ " on fd 2, read a line from fd 0 (byte by byte, so a command that
reads the same stdin gets what follows), run it, until EOF; the status is the last
command's. `-c LINE` runs one line and exits with its status; FILE runs each line of a
script (stopping at `exit`).
"""

from redleaf.rv6 import shell, ulib


def main(argv):
    sh = shell.Shell(ulib)
    if len(argv) >= 2 and argv[1] == "-c":
        if len(argv) < 3:
            ulib.fprintf(2, "sh: -c needs a command line\n")
            return shell.STATUS_SYNTAX
        return sh.run_line(argv[2])
    if len(argv) >= 2:
        try:
            fd = ulib.open(argv[1], ulib.O_RDONLY)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "sh: %s: %s\n", argv[1], e.strerror)
            return shell.STATUS_NOT_FOUND
        try:
            while line := ulib.readline(fd):
                sh.run_line(line.decode("utf-8", "replace"))
        finally:
            ulib.close(fd)
        return sh.status
    while True:
        ulib.write(2, b"$ ")
        line = ulib.readline(0)
        if not line:
            return sh.status
        sh.run_line(line.decode("utf-8", "replace"))
