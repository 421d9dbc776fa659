"""Pluggable wire backends for the emulated 82599.

A wire is what the NIC's MAC sees: it hands transmitted frames to the wire and
takes received frames from it.  Frames carry no FCS (the NIC adds/strips it).

Interface (duck typed, see :class:`Wire`)::

    send(frames: Sequence[bytes | memoryview]) -> None   # never blocks; a full wire drops
    recv(max: int) -> list[bytes]                        # never blocks; [] if nothing
    fileno() -> int | None                               # readable when recv has work
    close() -> None

and, for a wire whose frames arrive without making any fd readable, ``poll_s``:
seconds between looks while the NIC is otherwise idle (a number, or a method
returning one or None); without it the NIC's device process sleeps until its
doorbell rings or the fd turns readable.

A wire may also offer ``recv_array(max)`` / ``send_array(a)`` (equal-size frames as one
(n, size) uint8 array, every frame ``frame_size`` bytes): the NIC then moves a batch
with one scatter/gather; such a wire may offer ``discard(max) -> int`` too (take
frames the NIC has no descriptor for without making them: a generator's); without
it the NIC receives them and counts them.

Backends here:

* :class:`LoopbackWire` -- TX comes back as RX (in process).
* :func:`pair` -- two in-process endpoints cabled together (deques).
* :func:`socket_cable` -- two endpoints over an AF_UNIX SOCK_SEQPACKET socketpair;
  each end can live in a different process (pass the fd, rebuild with
  :meth:`SocketWire.from_fd`).
* :class:`ShmCable` / :class:`ShmWire` -- two endpoints over single-producer /
  single-consumer rings in a shared-memory file (no syscalls, no locks; each
  word has a single writer, so a killed endpoint leaves the cable usable).
* :class:`UdpWire` -- one frame per UDP datagram, 127.0.0.1 only.
* :class:`TapWire` -- a Linux TAP device inside a network namespace (netns.py).

The traffic generator/sink is pktgen.py; the test-frame codec and sequence tracker
are frames.py.  Owns: the backends above.  Calls: netns (namespace helper) only.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import mmap
import os
import socket
import struct
from typing import Protocol, Sequence

import numpy as np

from .netns import NetNamespace, WireUnavailable, run_ip

MAX_FRAME = 9216   # largest frame any wire carries


class Wire(Protocol):
    def send(self, frames: Sequence[bytes | memoryview]) -> None: ...
    def recv(self, max: int) -> list[bytes]: ...
    def fileno(self) -> int | None: ...
    def close(self) -> None: ...


class _Counters:
    tx_frames = 0      # frames accepted by send()
    rx_frames = 0      # frames returned by recv()
    tx_dropped = 0     # frames send() could not place (wire full)

    def counters(self) -> dict:
        return {"tx_frames": self.tx_frames, "rx_frames": self.rx_frames,
                "tx_dropped": self.tx_dropped}


# ============================================================== in-process queues
class QueueWire(_Counters):
    """An endpoint that sends into one deque and receives from another."""

    def __init__(self, txq: collections.deque, rxq: collections.deque, capacity: int = 1 << 16):
        self._txq = txq
        self._rxq = rxq
        self.capacity = capacity
        self.closed = False

    def send(self, frames):
        if self.closed:
            self.tx_dropped += len(frames)
            return
        room = self.capacity - len(self._txq)
        n = len(frames)
        if n > room:
            self.tx_dropped += n - max(room, 0)
            frames = frames[:max(room, 0)]
        self._txq.extend(bytes(f) for f in frames)
        self.tx_frames += len(frames)

    def recv(self, max):
        q = self._rxq
        if not q:
            return []
        if len(q) <= max:
            out = list(q)
            q.clear()
        else:
            pop = q.popleft
            out = [pop() for _ in range(max)]
        self.rx_frames += len(out)
        return out

    def pending(self) -> int:
        return len(self._rxq)

    def fileno(self):
        return None

    def close(self):
        self.closed = True


class LoopbackWire(QueueWire):
    """TX comes back as RX."""

    def __init__(self, capacity: int = 1 << 16):
        q: collections.deque = collections.deque()
        super().__init__(q, q, capacity)


def pair(capacity: int = 1 << 16) -> tuple[QueueWire, QueueWire]:
    """Two in-process endpoints of one cable."""
    a: collections.deque = collections.deque()
    b: collections.deque = collections.deque()
    return QueueWire(a, b, capacity), QueueWire(b, a, capacity)


# ============================================================== socketpair cable
class SocketWire(_Counters):
    """One end of a datagram cable (AF_UNIX SOCK_SEQPACKET or a UDP socket)."""

    def __init__(self, sock: socket.socket, peer=None):
        sock.setblocking(False)
        self.sock = sock
        self.peer = peer

    @classmethod
    def from_fd(cls, fd: int) -> "SocketWire":
        """Rebuild an end in another process from an inherited/passed fd."""
        return cls(socket.socket(fileno=fd))

    def send(self, frames):
        s = self.sock
        sent = 0
        try:
            if self.peer is None:
                for f in frames:
                    s.send(f)
                    sent += 1
            else:
                for f in frames:
                    s.sendto(f, self.peer)
                    sent += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise
        self.tx_frames += sent
        self.tx_dropped += len(frames) - sent

    def recv(self, max):
        out = []
        r = self.sock.recv
        try:
            # an empty datagram (or EOF: the peer closed its end) is no frame, but it
            # must not end the batch either: a peer's run of empty datagrams once
            # stalled every real frame behind it, one per process() (found by the
            # frames fuzzer).  At most `max` reads, so an EOF cannot spin here.
            for _ in range(max):
                f = r(MAX_FRAME)
                if f:
                    out.append(f)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        self.rx_frames += len(out)
        return out

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


def socket_cable(bufsize: int = 1 << 20) -> tuple[SocketWire, SocketWire]:
    """Two ends of a cable over a SOCK_SEQPACKET socketpair (one frame per datagram).

    The ends are plain fds, so each can be inherited by (or SCM_RIGHTS-passed to)
    a different process.
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        except OSError:
            pass
    return SocketWire(a), SocketWire(b)


# ============================================================== shared-memory cable
class ShmCable:
    """Layout of a shared-memory cable file: two SPSC rings of fixed-size slots.

    Header (4 KiB): magic, slots, slot_size; for direction d (0: end0->end1,
    1: end1->end0) a producer-written ``head`` u64 at 64+128*d and a
    consumer-written ``tail`` u64 at 128+128*d.  Slot = u32 length + data.
    """

    MAGIC = 0x52_4C_43_42   # "RLCB"
    HDR = 4096

    @staticmethod
    def size(slots: int, slot_size: int) -> int:
        return ShmCable.HDR + 2 * slots * slot_size

    @staticmethod
    def create(path: str, slots: int = 4096, slot_size: int = 2048) -> None:
        if slot_size % 8 or slot_size < 64:
            raise ValueError("slot_size must be a multiple of 8 and >= 64")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, ShmCable.size(slots, slot_size))
            os.pwrite(fd, struct.pack("<III", ShmCable.MAGIC, slots, slot_size), 0)
        finally:
            os.close(fd)


class ShmWire(_Counters):
    """One end (0 or 1) of a :class:`ShmCable` file.  fileno() is None: poll it."""

    #: the peer publishes frames without waking us: the NIC looks this often when idle
    poll_s = 0.002

    def __init__(self, path: str, end: int):
        if end not in (0, 1):
            raise ValueError("end must be 0 or 1")
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        magic, slots, slot_size = struct.unpack_from("<III", self._mm, 0)
        if magic != ShmCable.MAGIC:
            raise ValueError(f"{path} is not a cable file")
        self.slots, self.slot_size = slots, slot_size
        self._mv = memoryview(self._mm)
        self._q = self._mv.cast("Q")
        self._tx_head = (64 + 128 * end) >> 3
        self._tx_tail = (128 + 128 * end) >> 3
        self._rx_head = (64 + 128 * (1 - end)) >> 3
        self._rx_tail = (128 + 128 * (1 - end)) >> 3
        self._tx_data = ShmCable.HDR + end * slots * slot_size
        self._rx_data = ShmCable.HDR + (1 - end) * slots * slot_size
        self._len = np.frombuffer(self._mm, dtype="<u4")   # for lengths via fancy indexing

    def send(self, frames):
        q = self._q
        head = q[self._tx_head]
        free = self.slots - (head - q[self._tx_tail])
        n = min(len(frames), free)
        mv, S, base, slots = self._mv, self.slot_size, self._tx_data, self.slots
        maxlen = S - 4
        put = 0
        for i in range(n):
            f = frames[i]
            ln = len(f)
            if ln > maxlen:
                self.tx_dropped += 1
                continue
            off = base + ((head + put) % slots) * S
            mv[off + 4: off + 4 + ln] = f
            self._len[off >> 2] = ln
            put += 1
        q[self._tx_head] = head + put          # publish after the data
        self.tx_frames += put
        self.tx_dropped += len(frames) - n

    def recv(self, max):
        q = self._q
        tail = q[self._rx_tail]
        n = min(max, q[self._rx_head] - tail)
        if n <= 0:
            return []
        mm, S, base, slots, L = self._mm, self.slot_size, self._rx_data, self.slots, self._len
        out = []
        for i in range(n):
            off = base + ((tail + i) % slots) * S
            out.append(mm[off + 4: off + 4 + int(L[off >> 2])])
        q[self._rx_tail] = tail + n
        self.rx_frames += n
        return out

    def fileno(self):
        return None

    def close(self):
        try:
            self._len = None
            self._q.release()
            self._mv.release()
            self._mm.close()
        except (BufferError, ValueError):
            pass


# ============================================================== UDP on 127.0.0.1
LOCALHOST = "127.0.0.1"


class UdpWire(SocketWire):
    """One frame per UDP datagram between ports of 127.0.0.1 -- never any other address."""

    def __init__(self, local_port: int = 0, peer_port: int | None = None, host: str = LOCALHOST):
        if host != LOCALHOST:
            raise ValueError("UdpWire only carries frames on 127.0.0.1")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        except OSError:
            pass
        s.bind((LOCALHOST, local_port))
        super().__init__(s, None)
        self.port = s.getsockname()[1]
        if peer_port is not None:
            self.connect(peer_port)

    def connect(self, peer_port: int) -> None:
        """Cable this end to 127.0.0.1:peer_port (datagrams from elsewhere are refused by the kernel)."""
        if not 0 < peer_port < 65536:
            raise ValueError("bad port")
        self.sock.connect((LOCALHOST, peer_port))
        self.peer_port = peer_port


def udp_pair() -> tuple[UdpWire, UdpWire]:
    a = UdpWire()
    b = UdpWire(peer_port=a.port)
    a.connect(b.port)
    return a, b


# ============================================================== TAP in a netns
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


class TapWire(SocketWire):
    """A TAP device moved into ``netns`` and configured there with ``addr``.

    Frames the kernel in the namespace sends out of the tap are what the NIC
    receives; frames the NIC transmits are injected into the namespace.
    """

    def __init__(self, netns: NetNamespace, ifname: str = "rltap0", addr: str | None = "10.77.0.1/24",
                 own_netns: bool = False):
        """`own_netns`: close() also removes the namespace (a device that made it for
        its wire); otherwise the caller keeps it."""
        self.own_netns = own_netns
        if not os.path.exists("/dev/net/tun"):
            raise WireUnavailable("/dev/net/tun is missing (load the tun module or run in a "
                                  "container with the device)")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except PermissionError as e:
            raise WireUnavailable(f"cannot open /dev/net/tun ({e}); needs root or CAP_NET_ADMIN") from e
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(fd)
            raise WireUnavailable(f"TUNSETIFF {ifname} failed ({e}); needs CAP_NET_ADMIN") from e
        self.fd = fd
        self.ifname = ifname
        self.netns = netns
        try:
            run_ip("link", "set", "dev", ifname, "netns", netns.name)
            if addr:
                run_ip("-n", netns.name, "addr", "add", addr, "dev", ifname)
            run_ip("-n", netns.name, "link", "set", "dev", ifname, "up")
            run_ip("-n", netns.name, "link", "set", "dev", "lo", "up")
        except Exception:
            os.close(fd)
            raise
        self.tx_frames = self.rx_frames = self.tx_dropped = 0

    def send(self, frames):
        w = os.write
        sent = 0
        for f in frames:
            try:
                w(self.fd, f)
                sent += 1
            except (BlockingIOError, OSError):
                pass
        self.tx_frames += sent
        self.tx_dropped += len(frames) - sent

    def recv(self, max):
        out = []
        r = os.read
        try:
            while len(out) < max:
                out.append(r(self.fd, MAX_FRAME))
        except BlockingIOError:
            pass
        self.rx_frames += len(out)
        return out

    def fileno(self):
        return self.fd

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.own_netns:
            self.netns.close()
