"""A driver module whose import hangs: loading it with --shadow must not block the
supervisor."""

import time

time.sleep(30)


class Driver:
    SHADOW = "tests.supervisor.shadowed:EchoShadow"
