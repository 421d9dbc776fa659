"""echo [WORD...]: the words, one blank apart, and a newline on stdout."""

import errno

from redleaf.rv6 import ulib

EPIPE_STATUS = 141       # 128 + SIGPIPE, what a Unix shell reports


def run(argv):
    ulib.write(1, (" ".join(argv[1:]) + "\n").encode())
    return 0


def main(argv):
    try:
        return run(argv)
    except ulib.Rv6Error as e:
        if e.errno == errno.EPIPE:
            return EPIPE_STATUS     # the reader left (`... | head`): end quietly, as SIGPIPE does
        raise
