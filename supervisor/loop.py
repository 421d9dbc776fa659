"""The event loop: one poller, one timer heap, nothing else.

Owns: the zmq poller (sockets and plain file descriptors, each with its handler) and
the timers.  Calls only the handlers registered with it.  Every source of work in
the supervisor (control requests, zygote reports, client pidfds, deadlines) is an
event delivered here; a handler must return promptly and never wait for another
event, so no handler can starve the others.

Timers are ordered by (deadline, sequence number): the counter makes every key
unique, so two timers with the same deadline never compare their callbacks.
"""

from __future__ import annotations

import heapq
import itertools
import time

import zmq

#: the longest the loop sleeps with nothing due, so periodic work stays on time
MAX_WAIT_S = 0.05


class Loop:
    def __init__(self):
        self.poller = zmq.Poller()
        self.handlers: dict = {}
        self.timers: list = []
        self._seq = itertools.count()
        self.running = True
        self.periodic: list = []  # called after every poll round

    # ------------------------------------------------------------------ sources
    def add_reader(self, source, fn) -> None:
        """Call fn() when `source` (a zmq socket or an fd) is readable."""
        self.handlers[source] = fn
        self.poller.register(source, zmq.POLLIN)

    def remove_reader(self, source) -> None:
        if self.handlers.pop(source, None) is not None:
            self.poller.unregister(source)

    # ------------------------------------------------------------------ timers
    def after(self, delay: float, fn, *args) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._seq), fn, args))

    def _timeout_ms(self) -> int:
        wait = MAX_WAIT_S
        if self.timers:
            wait = min(wait, max(0.0, self.timers[0][0] - time.monotonic()))
        return int(wait * 1000) + (1 if wait > 0 else 0)

    def run_due(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self.timers)
            fn(*args)

    # ------------------------------------------------------------------ loop
    def run_once(self) -> None:
        for source, _ev in self.poller.poll(self._timeout_ms()):
            fn = self.handlers.get(source)
            if fn is not None:
                fn()
        self.run_due()
        for fn in self.periodic:
            fn()

    def run(self) -> None:
        while self.running:
            self.run_once()

    def stop(self) -> None:
        self.running = False
