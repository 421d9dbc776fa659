"""Domains that misbehave on purpose, for the fault tests."""

import os
import time


class RaisesInInit:
    def __init__(self, ctx):
        raise ValueError("constructor refused to start")


class DiesSoon:
    def __init__(self, ctx):
        pass

    def run(self):
        time.sleep(0.05)
        os._exit(3)
