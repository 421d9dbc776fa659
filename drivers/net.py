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

Why a bulk module (`PacketOps`): popping and pushing one handle at a time costs a
few microseconds of Python per packet, more than the whole packet budget.  The
operations here validate and move a whole batch with numpy over the ownership table,
with the same checks and the same write order (entry, then parent as the commit,
then the length) as `RRefDeque.push_back` / `pop_front`, so a domain killed in the
middle leaves the heap as recoverable as the one-at-a-time path would.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

from domains import interface, raises
from shared_heap import Bytes, OwnershipError, RRefDeque, record, u32, u64
from shared_heap.layout import CHUNK, K_RECORD, R_LIVE, REC_SIZE, RECORD_DTYPE, UNIT
from shared_heap.rref import DQ_HDR

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


_HDR = struct.Struct("<IIII")
# u32 word index of each record field (shared_heap.layout.RECORD_DTYPE)
_W_STATE, _W_OWNER, _W_GEN, _W_TYPE, _W_OFF_LO, _W_OFF_HI = 0, 1, 2, 3, 4, 5
_W_BORROWER, _W_PARENT = 8, 9
assert [RECORD_DTYPE.fields[f][1] // 4 for f in ("state", "owner", "gen", "type_id", "offset", "borrower",
                                                 "parent")] == [0, 1, 2, 3, 4, 8, 9]


def _offsets(g: np.ndarray) -> np.ndarray:
    return g[:, _W_OFF_LO].astype(np.int64) | (g[:, _W_OFF_HI].astype(np.int64) << 32)


_EMPTY = np.empty(0, dtype=np.int64)
_LEN_OFF = Packet.dtype.fields["length"][1]


def client_errors_as_net_errors(method):
    """A client's malformed deque is the client's error, reported as the declared
    NetError, not an undeclared exception that would panic the driver (or shadow)."""
    name = method.__name__

    @functools.wraps(method)
    def checked(self, *args):
        try:
            return method(self, *args)
        except OwnershipError as e:
            raise NetError(f"{name}: {e}") from None
    return checked


class PacketOps:
    """Batch operations on RRefDeque[Packet] for one domain's heap view.

    Offsets are heap offsets of Packet objects (= DMA addresses of their buffers).
    """

    def __init__(self, heap):
        self.heap = heap
        self.did = heap.domain_id
        hf = heap.hf
        # the record table as rows of ten u32 words: one gather per batch, then
        # column compares (much cheaper than field access on a structured copy)
        self.recw = np.ndarray((heap.n_records, REC_SIZE // 4), dtype=np.uint32, buffer=heap.mem,
                               offset=hf.layout.records)
        self.maps = hf.maps.reshape(-1)
        self.arena = hf.arena_off
        self.n_records = heap.n_records
        self.mem = np.frombuffer(heap.mem, dtype=np.uint8)
        self.mem32 = np.frombuffer(heap.mem, dtype=np.uint32, count=len(heap.mem) // 4)
        self.tid = Packet.type_id
        heap._register(Packet.type_id, Packet.type_name, str(Packet.dtype.descr))

    # -- allocation ---------------------------------------------------------------------
    def alloc_packets(self, n: int) -> np.ndarray:
        """Allocate `n` zeroed Packets owned by this domain; returns their offsets.

        Why not `heap.alloc` in a loop: it leases one 64 KiB chunk (16 packets) per
        control round trip and rescans its chunks first, ~100 us a packet; here the
        chunks are leased in one request, then the ordinary raw allocation runs."""
        out = np.empty(n, dtype=np.int64)
        if n <= 0:
            return out
        self._prelease(n)
        heap, size, tid, mem = self.heap, Packet.size, self.tid, self.heap.mem
        alloc = heap._alloc_raw
        zero = bytes(size)
        for i in range(n):
            _slot, _gen, off = alloc(size, K_RECORD, tid)
            mem[off:off + size] = zero
            out[i] = off
        return out

    def _prelease(self, n: int) -> None:
        """Make sure the heap has `n` free packet-sized slots, leasing chunks in bulk
        (the same bookkeeping as Heap._take_small does for one chunk)."""
        heap = self.heap
        k = (Packet.size - 1).bit_length()
        fl = heap.free_lists.get(k)
        if fl is None:
            return  # packets are a large-object class here: leave it to the heap
        if len(fl) < n:
            heap._rescan(k)  # slots other domains freed in our chunks come first
        per_chunk = CHUNK >> k
        need = -(-(n - len(fl)) // per_chunk)
        if need <= 0:
            return
        for c in heap.lease_fn("chunks", need):
            heap.hf.chunks["klass"][c] = k
            heap.my_chunks.add(c)
            heap.class_chunks[k].append(c)
            base = heap.arena + c * CHUNK
            fl.extend(range(base + CHUNK - (1 << k), base - 1, -(1 << k)))
        if len(heap.free_slots) < n:
            heap.free_slots.extend(heap.lease_fn("records", n - len(heap.free_slots)))

    def deque(self, capacity: int, offsets=None):
        dq = self.heap.alloc_deque(Packet, capacity)
        if offsets is not None and len(offsets):
            self.put(dq, offsets)
        return dq

    def free(self, offsets) -> None:
        """Free Packets this domain owns at top level."""
        offs = np.asarray(offsets, dtype=np.int64)
        if not offs.size:
            return
        slots, _gens = self._owned_slots(offs, "free")
        for s in slots.tolist():
            self.heap._free_raw(s)

    # -- packet fields --------------------------------------------------------------------
    def lengths(self, offsets: np.ndarray) -> np.ndarray:
        return self.mem32[(offsets + _LEN_OFF) >> 2].astype(np.int64)

    def set_lengths(self, offsets: np.ndarray, lengths) -> None:
        self.mem32[(offsets + _LEN_OFF) >> 2] = lengths

    # -- deques --------------------------------------------------------------------------
    def _hdr(self, dq):
        dq._check_owned()
        head, n, cap, etid = _HDR.unpack_from(self.heap.mem, dq.offset)
        if etid != self.tid or cap * 8 + DQ_HDR > dq.size or head >= max(cap, 1) or n > cap:
            raise OwnershipError("not an RRefDeque[Packet], or its header is corrupt")
        return head, n, cap

    def _pairs(self, dq, cap: int) -> np.ndarray:
        return np.ndarray((cap, 2), dtype=np.uint32, buffer=self.heap.mem, offset=dq.offset + DQ_HDR)

    def _elements(self, dq, head: int, k: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
        """Validated (slots, offsets) of the first k elements (live Packets of the
        generation the entry names, inside dq)."""
        idx = np.arange(head, head + k) % cap if head + k > cap else slice(head, head + k)
        pairs = self._pairs(dq, cap)[idx]
        slots = pairs[:, 0].astype(np.int64)
        # one gather of whole records (an out-of-range slot is clipped, then refused)
        g = self.recw.take(slots, axis=0, mode="clip")
        ok = ((slots > 0) & (slots < self.n_records) & (g[:, _W_GEN] == pairs[:, 1])
              & (g[:, _W_PARENT] == dq.slot) & (g[:, _W_TYPE] == self.tid)
              & ((g[:, _W_STATE] & 0xFF) == R_LIVE))
        if not ok.all():
            raise OwnershipError(f"RRefDeque[Packet] holds {int((~ok).sum())} entries that are not "
                                 f"live Packets inside it")
        return slots, _offsets(g)

    def peek(self, dq) -> np.ndarray:
        """Offsets of the packets in `dq`, front to back; they stay in the deque."""
        head, n, cap = self._hdr(dq)
        if not n:
            return _EMPTY
        return self._elements(dq, head, n, cap)[1]

    def take(self, dq, max_n: int | None = None) -> np.ndarray:
        """Remove up to `max_n` packets from the front of `dq`; this domain owns them
        (top level) afterwards.  Returns their offsets."""
        head, n, cap = self._hdr(dq)
        k = n if max_n is None else max(0, min(n, max_n))
        if not k:
            return _EMPTY
        slots, offs = self._elements(dq, head, k, cap)
        _HDR.pack_into(self.heap.mem, dq.offset, (head + k) % cap, n - k, cap, self.tid)
        recw = self.recw
        recw[slots, _W_OWNER] = self.did
        recw[slots, _W_PARENT] = 0              # the commit, as in pop_front
        return offs

    def _owned_slots(self, offs: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(slots, generations) of Packets this domain owns at top level, unlent."""
        # the occupancy map names the record whose object starts at each 64-byte
        # unit; an offset that is not such a start (or lies outside the arena, so
        # is clipped) finds a record whose offset differs, and is refused below
        slots = self.maps.take((offs - self.arena) // UNIT, mode="clip").astype(np.int64)
        g = self.recw.take(slots, axis=0, mode="clip")
        ok = ((slots > 0) & (g[:, _W_OWNER] == self.did) & (g[:, _W_PARENT] == 0) & (g[:, _W_BORROWER] == 0)
              & (g[:, _W_TYPE] == self.tid) & ((g[:, _W_STATE] & 0xFF) == R_LIVE) & (_offsets(g) == offs))
        if not ok.all():
            raise OwnershipError(f"{what}: {int((~ok).sum())} of {len(offs)} packets are not Packets "
                                 f"this domain owns at top level (or not the start of a heap object)")
        return slots, g[:, _W_GEN]

    def room(self, dq) -> int:
        head, n, cap = self._hdr(dq)
        return cap - n

    def put(self, dq, offsets) -> int:
        """Append Packets (owned by this domain, top level) to `dq`, as many as fit.
        Returns how many were appended (a prefix of `offsets`)."""
        head, n, cap = self._hdr(dq)
        offs = np.asarray(offsets, dtype=np.int64)
        k = min(cap - n, offs.size)
        if k <= 0:
            return 0
        offs = offs[:k]
        slots, gens = self._owned_slots(offs, "put")
        start = (head + n) % cap
        idx = np.arange(start, start + k) % cap if start + k > cap else slice(start, start + k)
        pairs = self._pairs(dq, cap)
        pairs[idx, 0] = slots
        pairs[idx, 1] = gens
        self.recw[slots, _W_PARENT] = dq.slot    # the commit, as in push_back
        _HDR.pack_into(self.heap.mem, dq.offset, head, n + k, cap, self.tid)
        return k

    def transfer(self, src, dst, max_n: int | None = None) -> int:
        """Move packets from the front of `src` to the back of `dst` (both owned here)."""
        k = self.room(dst)
        if max_n is not None:
            k = min(k, max_n)
        offs = self.take(src, k)
        return self.put(dst, offs)
