"""Peer transports for the call benchmarks: each runs an echo server in a forked
process and times round trips the same way the redleaf client does."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import struct
import time

_HDR = struct.Struct("<Q")


def _recv_exact(sock: socket.socket, n: int, buf: bytearray) -> memoryview:
    view = memoryview(buf)[:n]
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError
        got += k
    return view


class SocketpairPeer:
    name = "socketpair"

    def __init__(self):
        self.a, b = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            self.a.close()
            buf = bytearray(1 << 27)
            try:
                while True:
                    hdr = _recv_exact(b, 8, buf)
                    n = _HDR.unpack(hdr)[0]
                    data = _recv_exact(b, n, buf) if n else memoryview(b"")
                    b.sendall(_HDR.pack(n))
                    if n:
                        b.sendall(data)
            except (EOFError, OSError):
                os._exit(0)
        b.close()
        self.buf = bytearray(1 << 27)

    def call(self, payload: bytes) -> None:
        self.a.sendall(_HDR.pack(len(payload)))
        if payload:
            self.a.sendall(payload)
        n = _HDR.unpack(_recv_exact(self.a, 8, self.buf))[0]
        if n:
            _recv_exact(self.a, n, self.buf)

    def close(self):
        self.a.close()
        os.waitpid(self.pid, 0)


class PipePeer:
    name = "mp-pipe"

    def __init__(self):
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=PipePeer._serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    @staticmethod
    def _serve(conn):
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
        except (EOFError, OSError):
            pass

    def call(self, payload: bytes) -> None:
        self.conn.send_bytes(payload)
        self.conn.recv_bytes()

    def close(self):
        self.conn.close()
        self.proc.join(5)


class ZmqPeer:
    name = "pyzmq-reqrep-ipc"

    # The server is a fresh interpreter, not a fork: forking a process whose libzmq
    # threads are running (the benchmark has been a redleaf client) is not safe, and
    # a server that died at birth left the REQ socket waiting forever.
    SERVER = """
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
s.bind(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush()
while True:
    m = s.recv(copy=False)
    if m.bytes == b"__quit__":
        s.send(b"")
        break
    s.send(m, copy=False)
"""

    def __init__(self):
        import subprocess
        import sys
        import tempfile

        import zmq

        self.dir = tempfile.mkdtemp(prefix="redleaf-bench-zmq-")
        self.addr = f"ipc://{self.dir}/s"
        self.proc = subprocess.Popen([sys.executable, "-c", self.SERVER, self.addr], stdout=subprocess.PIPE)
        if self.proc.stdout.readline().strip() != b"ready":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("the pyzmq peer server did not start")
        self.ctx = zmq.Context()
        self.s = self.ctx.socket(zmq.REQ)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.setsockopt(zmq.RCVTIMEO, 60_000)  # a dead server is an error, not a hang
        self.s.connect(self.addr)

    def call(self, payload: bytes) -> None:
        self.s.send(payload, copy=len(payload) < 65536)
        self.s.recv(copy=False)

    def close(self):
        import shutil

        try:
            self.s.send(b"__quit__")
            self.s.recv()
        except Exception:
            self.proc.kill()
        self.s.close()
        self.ctx.term()
        self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def time_calls(fn, n: int, gap_s: float = 0.0) -> list[float]:
    """Per-call latencies in seconds; `gap_s` idles between calls (cold path)."""
    out = []
    pc = time.perf_counter
    for _ in range(n):
        if gap_s:
            time.sleep(gap_s)
        t0 = pc()
        fn()
        out.append(pc() - t0)
    return out
