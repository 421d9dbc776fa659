"""A driver module whose import kills the importing process: loading it with
--shadow must not take the supervisor with it."""

import os

os._exit(3)


class Driver:
    SHADOW = "tests.supervisor.shadowed:EchoShadow"
