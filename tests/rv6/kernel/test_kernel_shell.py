"""The kernel domain's own logic, in this process: KernelDomain over the stand-in fs
(tests/rv6/fuse_fakes.py), with the runtime's part (who calls, on which channel, which
clients are alive) and the supervisor's (spawn_child ids, kill_child, child_exit
notices) played by the test. Deterministic where the real instance is not: domain ids
reused, notices late or early."""

from __future__ import annotations

import errno
import select
from types import SimpleNamespace

import pytest

from redleaf.domains.doorbell import Bell, make_bell
from redleaf.domains.errors import ControlError
from redleaf.rv6.kernel.errors import Rv6Error
from redleaf.rv6.kernel.proc import ZOMBIE
from redleaf.rv6.kernel_domain import KernelDomain
from tests.rv6.fuse_fakes import StandInFs, StandInHeap


class World:
    """Plays the runtime and the supervisor around one KernelDomain."""

    def __init__(self, tmp):
        self.fs = StandInFs(nblocks=2048, inodes=256)
        self.alive_channels: set[int] = set()
        self.tmp = tmp
        self.rt = SimpleNamespace(serving=None, client_alive=lambda ch: ch in self.alive_channels,
                                  paths=SimpleNamespace(bell=lambda did: tmp / f"bell{did}"))
        self.next_ids = [10, 11, 12, 13]
        self.killed: list[int] = []
        self.notices: list[dict] = []
        self.refuse_spawn = False
        self.late: list[dict] = []  # notices that arrive while the next spawn_child is answered
        self.heap = StandInHeap()
        ctx = SimpleNamespace(rt=self.rt, config={}, heap=self.heap, use=lambda role, iface, reentrant=True: self.fs,
                              spawn_child=self.spawn_child, kill_child=self.killed.append,
                              child_exits=self.child_exits)
        self.k = KernelDomain(ctx)
        self.k.fs.open("/bin/p", 0o101, 0o644)  # O_WRONLY|O_CREAT
        fd = self.k.fs.open("/bin/p", 1, 0)
        vec = ctx.heap.alloc_vec("uint8", 32)
        src = b"def main(argv):\n    return 0\n"
        vec.np[:len(src)] = list(src)
        self.k.fs.write(fd, vec, len(src))
        self.k.fs.close(fd)

    def vec(self, data: bytes):
        """A caller's byte vector holding `data` (at least 10 bytes long)."""
        v = self.heap.alloc_vec("uint8", max(10, len(data)))
        v.np[:len(data)] = list(data)
        return v

    def spawn_child(self, config: dict) -> int:
        if self.refuse_spawn:
            raise ControlError("Exhausted", "all domain slots are in use")
        self.notices += self.late
        self.late = []
        did = self.next_ids.pop(0)
        make_bell(self.tmp / f"bell{did}")
        return did

    def rung(self, did: int) -> bool:
        """Was domain did's doorbell rung since the last look (and drain it)?"""
        b = Bell(self.tmp / f"bell{did}")
        try:
            return bool(select.select([b.fd], [], [], 0)[0]) and (b.drain() or True)
        finally:
            b.close()

    def child_exits(self) -> list[dict]:
        out, self.notices = self.notices, []
        return out

    def as_caller(self, did: int, chan: int | None = None):
        """Make the next calls come from domain `did` on channel `chan`."""
        chan = chan if chan is not None else did * 100
        self.rt.serving = SimpleNamespace(caller=did, chan_id=chan)
        return self.k

    def died(self, did: int, code: int, late: bool = False) -> None:
        """Domain did died; its notice is here now, or (late) comes in during the next
        spawn_child, as the supervisor sends it ahead of that reply."""
        (self.late if late else self.notices).append({"child": did, "code": code})
        self.next_ids.insert(0, did)  # the supervisor reuses the id at once


@pytest.fixture
def w(tmp_path):
    return World(tmp_path)


def test_a_client_gets_a_session_and_its_child_is_known_by_its_domain_id(w):
    w.alive_channels.add(500)
    k = w.as_caller(5, 500)
    me = k.getpid()
    child = k.spawn("/bin/p", ("p",), None)
    assert w.as_caller(10).getpid() == child and k.getppid() == me
    w.as_caller(10).exit(7)
    assert w.as_caller(5, 500).wait(-1) == (child, 7)


def test_a_death_notice_makes_a_zombie_with_128_plus_the_signal(w):
    w.alive_channels.add(500)
    k = w.as_caller(5, 500)
    child = k.spawn("/bin/p", ("p",), None)
    assert k.wait(child) is None
    w.died(10, -9)
    assert k.wait(child) == (child, 137)


def test_a_reused_id_names_the_new_child_not_the_dead_one(w):
    w.alive_channels.add(500)
    k = w.as_caller(5, 500)
    first = k.spawn("/bin/p", ("p",), None)
    w.died(10, 3, late=True)  # not yet taken in when the next spawn gets the same id
    second = w.as_caller(5, 500).spawn("/bin/p", ("p",), None)
    assert w.k.by_domain[10].pid == second
    assert w.as_caller(10).getpid() == second
    assert w.as_caller(5, 500).wait(first) == (first, 3)
    assert k.wait(second) is None


def test_a_new_client_under_a_gone_clients_id_gets_a_session_of_its_own(w):
    w.alive_channels.add(500)
    old_session = w.as_caller(5, 500).getpid()
    w.alive_channels.discard(500)
    w.alive_channels.add(501)
    assert w.as_caller(5, 501).getpid() != old_session
    assert old_session not in w.k.ptable.procs  # ended, and reaped by init


def test_a_failed_start_is_eagain_and_leaves_nothing(w):
    w.alive_channels.add(500)
    k = w.as_caller(5, 500)
    w.refuse_spawn = True
    with pytest.raises(Rv6Error) as ei:
        k.spawn("/bin/p", ("p",), (0, 1))
    assert ei.value.errno == errno.EAGAIN
    with pytest.raises(Rv6Error) as ei:
        k.wait(-1)
    assert ei.value.errno == errno.ECHILD
    console = w.k.by_domain[5].fds.get(0)
    assert console.ref == 3  # the child's inherited references went back


def test_kill_asks_the_supervisor_and_the_status_is_137_whatever_the_notice_says(w):
    w.alive_channels.add(500)
    k = w.as_caller(5, 500)
    child = k.spawn("/bin/p", ("p",), None)
    k.kill(child)
    assert w.killed == [10] and w.k.ptable.procs[child].state == ZOMBIE
    w.died(10, 0)
    assert k.wait(child) == (child, 137)
    with pytest.raises(Rv6Error) as ei:
        w.as_caller(5, 500).kill(5000)
    assert ei.value.errno == errno.ESRCH


def test_a_caller_told_not_yet_is_rung_when_that_may_have_changed(w):
    w.alive_channels.add(500)
    make_bell(w.tmp / "bell5")  # the session's client
    k = w.as_caller(5, 500)
    r, wfd = k.pipe()
    reader = k.spawn("/bin/p", ("p",), (r,))
    k.spawn("/bin/p", ("p",), (-1, wfd))
    k.close(r)
    k.close(wfd)
    assert w.as_caller(10).read(0, w.vec(b""), 10)[0] == -1  # the reader is told "not yet"
    assert not w.rung(10)
    assert w.as_caller(11).write(1, w.vec(b"x"), 1) == 1
    assert w.rung(10) and not w.rung(11)  # the writer's data rings the reader, only
    n, v = w.as_caller(10).read(0, w.vec(bytes(10)), 10)
    assert bytes(v.np[:n]) == b"x"
    assert w.as_caller(5, 500).wait(reader) is None  # the session waits for its child
    assert not w.rung(5)
    w.as_caller(10).exit(0)
    assert w.rung(5)  # the child's exit rings its parent
    assert w.as_caller(5, 500).wait(reader) == (reader, 0)
    with pytest.raises(Rv6Error) as ei:
        w.as_caller(11).write(1, w.vec(b"y"), 1)  # its reader is gone with the exit
    assert ei.value.errno == errno.EPIPE
    assert w.as_caller(5, 500).console_output(100) == b""  # the terminal waits for output
    fd = w.as_caller(5, 500).open("/dev/console", 1)
    w.as_caller(5, 500).write(fd, w.vec(b"hi"), 2)
    assert w.rung(5)  # a write to its console rings the terminal


def test_one_client_on_two_channels_is_one_session(w):
    w.alive_channels |= {500, 501}
    pid = w.as_caller(5, 500).getpid()
    assert w.as_caller(5, 501).getpid() == pid
    w.alive_channels.discard(500)
    assert w.as_caller(5, 501).getpid() == pid
