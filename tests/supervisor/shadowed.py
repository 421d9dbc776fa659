"""A toy driver with a shadow, to test the supervisor's `shadow = true` wiring without
a device: the shadow forwards `inc` and hides the driver's crashes by retrying."""

import time

from redleaf.domains import DomainCrashed, DomainUnavailable
from redleaf.domains.builtin.echo import Echo, EchoDomain


class ShadowedEcho(EchoDomain):
    SHADOW = "tests.supervisor.shadowed:EchoShadow"


class NoShadow(EchoDomain):
    pass


class EchoShadow(EchoDomain):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.driver = ctx.use("driver", Echo)
        self.retries = 0
        ctx.export(ctx.name, self, Echo)

    def inc(self, x: int) -> int:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return self.driver.inc(x)
            except (DomainCrashed, DomainUnavailable):
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(0.002)

    def get(self, key: str) -> str:
        return str(self.retries)
