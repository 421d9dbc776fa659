"""The network-device interface drivers export, as in RedLeaf: `Net`.

    submit_and_poll(packets, collect, tx) -> (n, packets, collect)
        tx=True:  send the packets in `packets` (n = how many the TX ring took; the
                  rest stay in `packets`); buffers the device has finished sending are
                  appended to `collect`, so the caller can reuse them.
        tx=False: `packets` are empty buffers for the RX ring (n = how many the driver
                  took); received packets are appended to `collect`.
    poll(collect, tx) -> (k, collect)
        only the collecting half: k packets appended to `collect`.
    stats() -> NetStats

A `Packet` is a heap object: a fixed 2 KiB buffer (first, so the DMA address of the
buffer is the object's heap offset) and the frame length.  The deques cross domains
by move (O(1): only the deque's owner changes; its elements belong to it).

Drivers and applications move packets in batches with `PacketOps`
(shared_heap.batch.RecordOps for Packets): popping and pushing one handle at a time
costs a few microseconds of Python per packet, more than the whole packet budget.
"""

from __future__ import annotations

import numpy as np

from redleaf.domains import interface, raises
from redleaf.shared_heap import Bytes, RRefDeque, record, u32, u64
from redleaf.shared_heap.batch import RecordOps, ownership_errors_as

PACKET_BUF = 2048
MAX_FRAME = 1514  # without FCS; what fits a standard 2 KiB receive buffer comfortably


class NetError(Exception):
    """The driver cannot serve the request (device refused, link down, driver gone)."""


@record
class Packet:
    data: Bytes[PACKET_BUF]
    length: u32
    flags: u32


@record
class NetStats:
    rx_packets: u64
    tx_packets: u64
    rx_bytes: u64
    tx_bytes: u64
    rx_missed: u64       # frames the device dropped: no free RX descriptor (MPC)
    device_errors: u64   # misprogramming the device reported
    cpu_ns: u64          # CPU time of the driver domain's process
    incarnation: u64     # bumps when the driver restarts (shadow: restarts survived)


@interface(timeout_s=30.0)
class Net:
    @raises(NetError)
    def submit_and_poll(self, packets: RRefDeque[Packet], collect: RRefDeque[Packet],
                        tx: bool) -> tuple[int, RRefDeque[Packet], RRefDeque[Packet]]: ...

    @raises(NetError)
    def poll(self, collect: RRefDeque[Packet], tx: bool) -> tuple[int, RRefDeque[Packet]]: ...

    def stats(self) -> NetStats: ...


@interface(timeout_s=600.0)
class NetApp:
    """A packet application's benchmark/driving handle (l2fwd, in-driver apps).
    (Not `run`: a domain object's `run()` is its main loop for the domain host.)

    run_app(mode, batch, seconds, limit) runs "rx", "tx" or "fwd" for `seconds` (or until
    `limit` packets, if > 0) and returns (packets, cpu_ns, wall_ns, errors)."""

    @raises(NetError)
    def run_app(self, mode: str, batch: int, seconds: float, limit: int) -> tuple[int, int, int, int]: ...

    def counters(self) -> tuple[int, int, int, int]: ...  # (received, sent, dropped, errors)

    def timeline(self) -> bytes: ...  # of the last run: see drivers.ixgbe.app.decode_timeline


_LEN_OFF = Packet.dtype.fields["length"][1]


#: a client's malformed deque is the client's error, reported as the declared
#: NetError, not an undeclared exception that would panic the driver (or shadow)
client_errors_as_net_errors = ownership_errors_as(NetError)


class PacketOps(RecordOps):
    """Batch operations on RRefDeque[Packet] for one domain's heap view
    (shared_heap.batch.RecordOps for Packets, plus the frame length).

    Offsets are heap offsets of Packet objects (= DMA addresses of their buffers).
    """

    def __init__(self, heap):
        super().__init__(heap, Packet)
        # _len_at[o] is the length field of the Packet at offset o (a u32 view with a
        # stride of one byte: one gather or scatter per batch, no index arithmetic)
        self._len_at = np.ndarray((len(heap.mem) - _LEN_OFF - 3,), dtype="<u4", buffer=heap.mem,
                                  offset=_LEN_OFF, strides=(1,))

    def alloc_packets(self, n: int) -> np.ndarray:
        """Allocate `n` zeroed Packets owned by this domain; returns their offsets."""
        return self.alloc(n)

    def lengths(self, offsets: np.ndarray) -> np.ndarray:
        return self._len_at[offsets].astype(np.int64)

    def set_lengths(self, offsets: np.ndarray, lengths) -> None:
        self._len_at[offsets] = lengths

