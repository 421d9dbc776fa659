"""init [RUNS]: the first process. Makes /dev/console (mknod, major 1) if missing, then runs
/bin/sh on the console, again each time it exits, reaping every other child it is handed
(orphans are re-parented to init) while it waits. RUNS (for tests and scripted boots)
stops after that many shells, once every child is reaped; without it init never ends.
A shell that dies at once (its console at EOF, say) is re-run at most once a second."""

import errno

from redleaf.rv6 import ulib

CONSOLE = "/dev/console"
CONSOLE_MAJOR = 1
RESPAWN_MS = 1000


def console():
    try:
        ulib.stat(CONSOLE)
    except ulib.Rv6Error:
        try:
            ulib.mkdir("/dev")
        except ulib.Rv6Error as e:
            if e.errno != errno.EEXIST:
                raise
        ulib.mknod(CONSOLE, CONSOLE_MAJOR, 0)
    return ulib.open(CONSOLE, ulib.O_RDWR)


def main(argv):
    runs = int(argv[1]) if len(argv) > 1 else None
    fd = console()
    done = 0
    while runs is None or done < runs:
        started = ulib.uptime()
        try:
            pid = ulib.spawn("/bin/sh", ["sh"], [fd, fd, fd])
        except ulib.Rv6Error as e:
            ulib.fprintf(fd, "init: cannot run /bin/sh: %s\n", e.strerror)
            ulib.sleep(RESPAWN_MS)
            continue
        while True:
            wpid, _status = ulib.wait()
            if wpid == pid:
                break           # others were orphans handed to init: reaped, nothing more
        done += 1
        if runs is None and ulib.uptime() - started < RESPAWN_MS:
            ulib.sleep(RESPAWN_MS)
    while True:                 # the last shell's orphans
        try:
            ulib.wait()
        except ulib.Rv6Error as e:
            if e.errno == errno.ECHILD:
                return 0
            raise
