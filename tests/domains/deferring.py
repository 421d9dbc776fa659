"""A domain that uses Runtime.defer (the tests in test_defer.py)."""

from __future__ import annotations

import time

from redleaf.domains import interface


@interface
class Deferring:
    def stamp(self, fail: bool) -> float: ...  # answers at once; a deferred task runs after
    def last_deferred(self) -> float: ...      # when the last deferred task ran


class DeferringDomain(Deferring):
    def __init__(self, ctx):
        self.rt = ctx.rt
        self.ran_at = 0.0
        ctx.export(ctx.name, self, Deferring)

    def stamp(self, fail: bool) -> float:
        def later():
            if fail:
                raise RuntimeError("a deferred task fails")
            time.sleep(0.05)  # long enough to show the caller was not kept waiting
            self.ran_at = time.monotonic()
        self.rt.defer(later)
        return time.monotonic()

    def last_deferred(self) -> float:
        return self.ran_at
