"""`NvmeBDev` serves one client at a time: the rule, shared by the driver and its shadow.

Why: the I/O queue pair and its completions are not labelled by client, so a second
client would collect the first one's finished requests, data included.  Clients are
told apart by the channel being served (`Runtime.serving`).  While the current client
has requests it has not collected, another client's call fails with a BlockError
that says so (its moved deques are freed, as by any failed call).  Once the current
client has gone (its channel closed: exit, crash, detach), the next client's first
call waits for the departed client's requests and frees them: they never reach it.
"""

from __future__ import annotations

from drivers.bdev import BlockError


class OneClientAtATime:
    """Mixin: the class provides `ctx`, `_outstanding()` (requests the current client
    has not collected) and `_abandon()` (finish and free them); calls `_claim()` first
    in every NvmeBDev method."""

    client = 0  # channel id of the current NvmeBDev client (0: none yet)

    def _claim(self) -> None:
        rt = self.ctx.rt
        chan_id = rt.serving.chan_id
        if chan_id == self.client:
            return
        owed = self._outstanding()
        if owed:
            if rt.client_alive(self.client):
                raise BlockError(f"{self.ctx.name} serves one NvmeBDev client at a time, and another client has "
                                 f"{owed} requests it has not collected; this call's deques are freed (as by "
                                 "any failed call): retry with new ones once it has (or give each client its "
                                 "own device)")
            self._abandon()
        self.client = chan_id

    def _outstanding(self) -> int:
        raise NotImplementedError

    def _abandon(self) -> None:
        raise NotImplementedError
