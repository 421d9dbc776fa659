"""One client at a time: the rule `NvmeBDev` and `Net` (driver and shadow) share.

Why: a device queue pair serves whoever calls.  NVMe completions and NIC buffers are
not labelled by client, so with two clients one would collect the other's finished
requests (data included), or be handed the other's transmitted buffers.  Clients
are told apart by the channel being served (`Runtime.serving`).  While the current
client still has something in the driver, another client's call fails with the
interface's declared error, which says so (its moved deques are freed, as by any
failed call).  Once the current client has gone (its channel closed: exit, crash,
detach), the next client's first call settles what the departed one left
(`_abandon`: NVMe waits for its requests and frees them; the NIC is reset and its
buffers freed): none of it ever reaches the next client.
"""

from __future__ import annotations


class OneClientAtATime:
    """Mixin: the class provides `ctx`, `client_error` (the declared exception type),
    `client_iface` (the interface's name),
    `_outstanding()` (what the current client has in the driver, 0 if nothing),
    `_outstanding_what` (how to name it) and `_abandon()` (settle and free it); it
    calls `_claim()` first in every guarded method."""

    client = 0  # channel id of the current client (0: none yet)
    client_error: type = RuntimeError
    client_iface = "?"            # the guarded interface's name, for the message
    _outstanding_what = "requests it has not collected"

    def _claim(self) -> None:
        rt = self.ctx.rt
        chan_id = rt.serving.chan_id
        if chan_id == self.client:
            return
        owed = self._outstanding()
        if owed:
            if rt.client_alive(self.client):
                raise self.client_error(
                    f"{self.ctx.name} serves one {self.client_iface} client at a time, and another client "
                    f"has {owed} {self._outstanding_what}; this call's deques are freed (as by any failed call): "
                    "retry with new ones once that client has none there or has gone (or give each client "
                    "its own device)")
            self._abandon()
        self.client = chan_id

    def _outstanding(self) -> int:
        raise NotImplementedError

    def _abandon(self) -> None:
        raise NotImplementedError
