"""A software Net device: packets sent are at once received, in order, in the
same buffers (no copy, no device).  Use it to measure the cost of crossing
into a driver domain without any device work.

Same batched API as :class:`drivers.ixgbe.driver_core.IxgbeDriver`.
"""
from __future__ import annotations

import collections
import time
from typing import Sequence

import numpy as np

from redleaf.drivers.net import Net, NetApp, NetError, NetStats, PacketOps
from redleaf.shared_heap import OwnershipError

from .app import AppHost

_EMPTY = np.empty(0, dtype=np.int64)


class NullNet:
    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._q: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque()
        self._n = 0
        self.pool: list[int] = []
        self.tx_packets = self.rx_packets = self.tx_bytes = self.rx_bytes = 0

    def init(self, rx_buffers=()) -> None:
        self.give_rx_buffers(list(rx_buffers))

    def link_up(self) -> bool:
        return True

    def give_rx_buffers(self, offsets) -> None:
        self.pool.extend(np.asarray(offsets, dtype=np.int64).tolist())

    def tx_batch_arrays(self, offsets, lengths) -> int:
        n = min(len(offsets), self.capacity - self._n)
        if n <= 0:
            return 0
        offs = np.array(offsets[:n], dtype=np.int64)
        lens = np.array(lengths[:n], dtype=np.int64)
        self._q.append((offs, lens))
        self._n += n
        self.tx_packets += n
        self.tx_bytes += int(lens.sum())
        return n

    def tx_batch(self, packets: Sequence[tuple[int, int]]) -> int:
        if not packets:
            return 0
        a = np.array(packets, dtype=np.int64).reshape(-1, 2)
        return self.tx_batch_arrays(a[:, 0], a[:, 1])

    def rx_batch_arrays(self, max_packets: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._q or max_packets <= 0:
            return _EMPTY, _EMPTY
        outs, lens, got = [], [], 0
        while self._q and got < max_packets:
            o, l = self._q[0]
            take = min(max_packets - got, o.size)
            if take == o.size:
                self._q.popleft()
            else:
                self._q[0] = (o[take:], l[take:])
            outs.append(o[:take])
            lens.append(l[:take])
            got += take
        self._n -= got
        o = outs[0] if len(outs) == 1 else np.concatenate(outs)
        l = lens[0] if len(lens) == 1 else np.concatenate(lens)
        self.rx_packets += got
        self.rx_bytes += int(l.sum())
        return o, l

    def rx_batch(self, max_packets: int) -> list[tuple[int, int]]:
        o, l = self.rx_batch_arrays(max_packets)
        return list(zip(o.tolist(), l.tolist()))

    def tx_reclaim_arrays(self) -> np.ndarray:
        return _EMPTY            # sent buffers come back through rx_batch

    def tx_reclaim(self) -> list[int]:
        return []

    def stats(self) -> dict:
        return {"rx_packets": self.rx_packets, "tx_packets": self.tx_packets,
                "rx_bytes": self.rx_bytes, "tx_bytes": self.tx_bytes, "rx_missed": 0,
                "rx_oversize": 0}



class NullNetDomain(AppHost, Net, NetApp):
    """RedLeaf's nullnet experiment as a domain: `Net` with no device behind it.

    submit_and_poll moves the submitted packets straight into `collect` (sent =
    completed at once; RX buffers = received at once, contents untouched), so a
    benchmark over it measures the cost of crossing into a driver domain and of the
    batch bookkeeping, nothing else.  Manifest target:
    ``redleaf.drivers.ixgbe.nullnet:NullNetDomain``.
    """

    def __init__(self, ctx):
        self.ctx = ctx
        self.ops = PacketOps(ctx.heap)
        self.moved = 0
        self.app_packets = int(ctx.config.get("app_packets", 2048))
        ctx.export(ctx.name, self, Net)
        ctx.export(ctx.name, self, NetApp)

    def submit_and_poll(self, packets, collect, tx: bool):
        try:
            n = self.ops.transfer(packets, collect)
        except OwnershipError as e:   # a client's bad deque is its error, not our panic
            raise NetError(f"submit_and_poll: {e}") from None
        self.moved += n
        return n, packets, collect

    def poll(self, collect, tx: bool):
        return 0, collect

    def stats(self):
        v = NetStats.zeros()
        v["rx_packets"] = v["tx_packets"] = self.moved
        v["cpu_ns"] = time.process_time_ns()
        return v

    def counters(self):
        return self.moved, self.moved, 0, 0
