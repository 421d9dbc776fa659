"""A shared-memory channel for one caller/callee pair: a request and a response mailbox.

A caller has at most one call in flight on a channel (calls are synchronous; batching
happens inside a call through RRefDeques), so each direction needs a single slot,
not a ring.  Every field has one writer:

    caller : req_len, req_seq, the request payload
    callee : resp_len, resp_kind, resp_seq, the response payload
    supervisor : state, and resp_* once the callee is dead

A writer publishes the payload, then the length, then the sequence number, and a
reader loads the sequence number first.  Memory ordering: x86-64 only.  x86-64 is
TSO: stores become visible in program order and loads are not reordered with other
loads, so a reader that sees the new sequence number sees the payload, with no
fence.  A weakly ordered CPU (aarch64, POWER) may make the sequence-number store
visible before the payload stores, and the reader's loads may pass each other, so
both sides would need a release/acquire fence here.  Pure Python has none: the
stores are memcpys inside CPython (slice assignment, struct.pack_into), and
doorbell.fence() (an uncontended lock) is an acquire followed by a release, which
on aarch64 does not keep an earlier store before a later one.  Rather than claim a
portability we cannot show, the channel refuses to load on anything but x86-64
(the NVMe completion phase tag and the heap's single-store records rely on TSO as
well).  Nothing here trusts the peer: lengths and kinds are bounds-checked before use.

Where a channel lives (DESIGN §5a, "a call channel is mapped only by its two
parties"): not in the exchange heap, which every domain maps, but in a segment of its
own, a memfd of mode 0600 that the supervisor creates per channel (`create_segment`)
and describes, with an unguessable tag (128 random bits), to the two parties only (the
lookup reply, the channel_open push).  Each party maps it (`map_segment`) and sets its
own MAPPED flag in the header; the supervisor closes its descriptor as soon as both
flags are up, or at a deadline, so from then on no one else can map it at all.  A
memfd has no file-system name: nothing can be left behind, even by a killed
supervisor.  (Why not a /dev/shm file: a supervisor killed while a file was still
linked would leave it for good, and the stale-instance clean-up does not know it.)
A third domain thus cannot forge replies or write another pair's requests; a party
that writes garbage into its own channel hurts only its own calls.  The layout, and
so the fast path, is the same as when channels were heap objects.
"""

from __future__ import annotations

import mmap
import os
import platform
import re
import secrets
import stat
import struct

from .doorbell import fence

if platform.machine().lower() not in ("x86_64", "amd64"):
    raise ImportError(f"redleaf's shared-memory channels rely on x86-64 (TSO) store order; "
                      f"this machine is {platform.machine() or 'unknown'} (see redleaf.domains.channel)")

REQ_LEN = 0  # u32 (+4 pad), caller
REQ_SEQ = 8  # u64, caller
RESP_LEN = 64  # u32, callee
RESP_KIND = 68  # u32, callee
RESP_SEQ = 72  # u64, callee
STATE = 128  # u32, supervisor
CALLER = 132  # u32, supervisor (at creation)
CALLEE = 136  # u32, supervisor (at creation)
PAYLOAD = 140  # u32 payload area size, supervisor (at creation)
CALLER_MAPPED = 144  # u32, caller: 1 once it has mapped the segment
CALLEE_MAPPED = 148  # u32, callee: 1 once it has mapped the segment
HEADER = 192

# response kinds
OK = 1
DECLARED = 2  # a declared exception; payload = (index, args)
REJECTED = 3  # callee refused the request; payload = (error kind, message)
CRASHED = 4  # written by the supervisor: the callee died with this call in flight

# channel states
OPEN = 0
CALLEE_DEAD = 1
CALLER_DEAD = 2
CLOSED = 3

DEFAULT_PAYLOAD = 64 * 1024 + 1024

_LEN_KIND = struct.Struct("<II")  # resp_len, resp_kind
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HDR_INIT = struct.Struct("<IIII")


_SEGMENT_RE = re.compile(r"^([0-9]+)/([0-9]+)/([0-9a-f]{32})$")


class SegmentError(OSError):
    """A channel segment that cannot be mapped: gone (both parties mapped it already,
    its deadline passed, or the channel was freed), or not what the supervisor made."""


_libc = None
MAP_FIXED = 0x10  # <sys/mman.h> on Linux; the mmap module does not export it


def _map_fd(fd: int, size: int) -> memoryview:
    """Map `size` bytes of `fd` shared, holding no descriptor afterwards.

    Why not mmap.mmap: it keeps a dup of the fd for as long as the mapping lives, and
    an open descriptor is a way in (/proc/<pid>/fd/<n>) that must not outlive the
    moment both parties have mapped.  The mapping is unmapped when the last view of
    it is gone (a finalizer on the exporting ctypes array), so no view can dangle."""
    import ctypes
    import weakref

    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             ctypes.c_long]
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = lib
    addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot map a channel segment: {os.strerror(err)}")

    class _Segment(ctypes.c_ubyte * size):  # a subclass: weak-referenceable
        pass

    arr = _Segment.from_address(addr)
    arr.rl_mapped = size  # release_segment's mark: a mapping of ours, not yet given back
    weakref.finalize(arr, _libc.munmap, addr, size)
    return memoryview(arr).cast("B")


def release_segment(buf: memoryview) -> None:
    """Give a closed channel's memory back now, whatever views of it are still alive.

    A view outlives its channel wherever Python keeps it: a traceback's frame that
    held a reply, an exception kept in a reference cycle until the next collection.
    Each such view would keep the dead channel's segment mapped, and so allocated.
    Mapping fresh anonymous memory over it (MAP_FIXED replaces the mapping in one
    step) drops the segment's pages at once while every view stays valid: it reads
    a channel that says CLOSED, and what it writes goes nowhere.  The finalizer of
    _map_fd later unmaps the anonymous memory.  Idempotent; a buffer that is not a
    mapping of ours (a test's bytearray) is left alone."""
    import ctypes

    seg = buf.obj
    size = getattr(seg, "rl_mapped", 0)
    if not size:
        return
    addr = _libc.mmap(ctypes.addressof(seg), size, mmap.PROT_READ | mmap.PROT_WRITE,
                      mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return  # left mapped: the finalizer gives it back with the last view
    seg.rl_mapped = 0
    _U32.pack_into(buf, STATE, CLOSED)


def create_segment(size: int) -> tuple[str, int, memoryview]:
    """Supervisor side: a fresh anonymous segment (a memfd, mode 0600) of `size` bytes.

    Returns (descriptor, fd, view of the mapping).  The descriptor, "<pid>/<fd>/<tag>", is what the
    two parties are told: they open /proc/<pid>/fd/<fd> and check that it is the memfd
    named with <tag> (128 random bits), so a reused fd number is never mistaken for
    it (opening another process's fd needs the same uid and a dumpable process,
    which an ordinary supervisor is).  Once the supervisor closes fd, nobody can open
    the segment again; and being
    a memfd it has no name in any file system, so nothing is left behind whatever
    happens to the supervisor."""
    tag = secrets.token_hex(16)
    fd = os.memfd_create(f"redleaf-chan-{tag}", os.MFD_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, size)
        buf = _map_fd(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return f"{os.getpid()}/{fd}/{tag}", fd, buf


def map_segment(descriptor: str, size: int) -> memoryview:
    """A party's side: map the segment the supervisor described, after checking it is one."""
    m = _SEGMENT_RE.match(descriptor) if isinstance(descriptor, str) else None
    if m is None:
        raise SegmentError(f"{descriptor!r} does not describe a channel segment")
    pid, num, tag = m.groups()
    try:
        fd = os.open(f"/proc/{pid}/fd/{num}", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise SegmentError(f"channel segment {tag} is gone ({e.strerror}): it was freed, or not mapped "
                           f"before its deadline; look the name up again") from None
    try:
        # checked on the fd we hold, not on the path: what we map is what we checked
        if os.readlink(f"/proc/self/fd/{fd}") != f"/memfd:redleaf-chan-{tag} (deleted)":
            raise SegmentError(f"channel segment {tag} is gone (its descriptor names something else now)")
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077 or st.st_size != size:
            raise SegmentError(f"channel segment {tag} is not the supervisor's (mode {stat.S_IMODE(st.st_mode):o}, "
                               f"uid {st.st_uid}, size {st.st_size})")
        return _map_fd(fd, size)
    finally:
        os.close(fd)


def mark_mapped(buf: memoryview, role_off: int) -> None:
    _U32.pack_into(buf, role_off, 1)


def both_mapped(buf: memoryview) -> bool:
    return _U32.unpack_from(buf, CALLER_MAPPED)[0] == 1 and _U32.unpack_from(buf, CALLEE_MAPPED)[0] == 1


def channel_size(payload: int = DEFAULT_PAYLOAD) -> int:
    return HEADER + 2 * payload


def init_channel(buf: memoryview, caller: int, callee: int, payload: int = DEFAULT_PAYLOAD) -> None:
    """Supervisor side: zero a fresh channel and stamp its ends."""
    buf[:HEADER] = bytes(HEADER)
    _HDR_INIT.pack_into(buf, STATE, OPEN, caller, callee, payload)


def set_state(buf: memoryview, state: int) -> None:
    _U32.pack_into(buf, STATE, state)


def fail_inflight(buf: memoryview) -> bool:
    """Supervisor side, callee dead: complete any in-flight call with CRASHED.

    Returns True when a call was in flight (its caller must be woken)."""
    # Mark first, fence, then look: a caller that posts after our look has fenced
    # after its post and sees the mark (Runtime.wait_response), so no request is
    # left unanswered.
    _U32.pack_into(buf, STATE, CALLEE_DEAD)
    fence()
    req_seq = _U64.unpack_from(buf, REQ_SEQ)[0]
    resp_seq = _U64.unpack_from(buf, RESP_SEQ)[0]
    if req_seq != resp_seq:
        _LEN_KIND.pack_into(buf, RESP_LEN, 0, CRASHED)
        _U64.pack_into(buf, RESP_SEQ, req_seq)  # last, as in post_response
        return True
    return False


class Channel:
    """One end's view of a channel.  `seq` is the caller's (or callee's) cursor."""

    __slots__ = ("buf", "chan_id", "caller", "callee", "payload", "req_off", "resp_off", "seq")

    def __init__(self, buf: memoryview, chan_id: int, caller: int | None = None, callee: int | None = None):
        self.buf = buf
        self.chan_id = chan_id
        _state, self.caller, self.callee, self.payload = _HDR_INIT.unpack_from(buf, STATE)
        # The ends as the supervisor named them in its message, not as the header says:
        # the caller maps the header writable and may have rewritten it before the
        # callee mapped it (a forged caller id once made the callee ring a doorbell
        # that does not exist and die; found by the channel fuzzer).
        if caller is not None:
            self.caller = caller
        if callee is not None:
            self.callee = callee
        if self.payload <= 0 or HEADER + 2 * self.payload > len(buf):
            raise ValueError(f"channel {chan_id}: corrupt header (payload {self.payload}, size {len(buf)})")
        self.req_off = HEADER
        self.resp_off = HEADER + self.payload
        # Both ends start from what is already there: the callee from the last
        # request it answered, the caller from the last response it got.
        self.seq = _U64.unpack_from(buf, RESP_SEQ)[0]

    @property
    def state(self) -> int:
        return _U32.unpack_from(self.buf, STATE)[0]

    # -- caller side -------------------------------------------------------------
    def post_request(self, payload: bytes) -> int:
        n = len(payload)
        if n > self.payload:
            raise OverflowError(f"request of {n} bytes exceeds the channel's {self.payload}-byte payload")
        off = self.req_off
        self.buf[off:off + n] = payload
        seq = self.seq + 1
        self.seq = seq
        # Two stores, length then sequence number: the sequence number publishes the
        # request.  (One 16-byte pack_into is a memcpy whose byte order is not ours
        # to choose; the reader could see the new number beside the old length.)
        _U32.pack_into(self.buf, REQ_LEN, n)
        _U64.pack_into(self.buf, REQ_SEQ, seq)
        return seq

    def response_ready(self, seq: int) -> bool:
        return _U64.unpack_from(self.buf, RESP_SEQ)[0] == seq

    def read_response(self) -> tuple[int, memoryview]:
        n, kind = _LEN_KIND.unpack_from(self.buf, RESP_LEN)  # after the caller saw RESP_SEQ
        if n > self.payload:
            return REJECTED, memoryview(b"")
        return kind, self.buf[self.resp_off:self.resp_off + n]

    # -- callee side -------------------------------------------------------------
    def pending_request(self) -> memoryview | None:
        # The sequence number first, then the length: a reader that loaded the length
        # first could pair a stale length with a new request.
        seq = _U64.unpack_from(self.buf, REQ_SEQ)[0]
        if seq <= self.seq:
            return None  # nothing new (a caller never moves its sequence number backwards)
        self.seq = seq
        n = _U32.unpack_from(self.buf, REQ_LEN)[0]
        if n > self.payload:
            return memoryview(b"\xc1")  # the caller wrote garbage; 0xc1 is never valid msgpack
        return self.buf[self.req_off:self.req_off + n]

    def post_response(self, kind: int, payload: bytes) -> None:
        n = len(payload)
        if n > self.payload:
            payload = b""
            kind, n = REJECTED, 0
        off = self.resp_off
        self.buf[off:off + n] = payload
        _LEN_KIND.pack_into(self.buf, RESP_LEN, n, kind)
        _U64.pack_into(self.buf, RESP_SEQ, self.seq)  # last: publishes the response
