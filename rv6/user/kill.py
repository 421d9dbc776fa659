"""kill PID...: kill each process (it exits with status 137)."""

from redleaf.rv6 import ulib


def main(argv):
    if len(argv) < 2:
        ulib.fprintf(2, "usage: kill PID...\n")
        return 2
    status = 0
    for a in argv[1:]:
        try:
            ulib.kill(int(a))
        except ValueError:
            ulib.fprintf(2, "kill: %s: not a process id\n", a)
            status = 1
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "kill: %s: %s\n", a, e.strerror)
            status = 1
    return status
