"""The console device (/dev/console, major 1): a terminal's two byte queues.

Owns: one console's input (what the terminal typed, then EOF) and output (what
programs wrote, until the terminal drains it). Calls only errors.py. The terminal is
`redleaf sh`, an attached client that feeds input and drains output through the
kernel interface; programs read and write it through their descriptors. Output is
bounded: a program writing to a terminal that does not drain it gets WOULD_BLOCK, as a
real tty blocks its writer.
"""

from __future__ import annotations

from .errors import WOULD_BLOCK

CONSOLE_MAJOR = 1
OUT_LIMIT = 256 * 1024
IN_LIMIT = 256 * 1024


class Console:
    __slots__ = ("inp", "out", "eof", "hung_up")

    def __init__(self):
        self.inp = bytearray()
        self.out = bytearray()
        self.eof = False  # the terminal sent EOF (^D, or the end of its input)
        self.hung_up = False  # the terminal went away: output is dropped, input is EOF

    # the program's side
    def read(self, n: int):
        if n <= 0:
            return b""
        if self.inp:
            # a line at a time, as a cooked tty does, so a shell's read stops at its line
            end = self.inp.find(b"\n", 0, n)
            take = n if end < 0 else end + 1
            data = bytes(self.inp[:take])
            del self.inp[:take]
            return data
        if self.eof or self.hung_up:
            return b""
        return WOULD_BLOCK

    def write(self, data: bytes):
        if self.hung_up:
            return len(data)  # a hung-up terminal swallows output, as /dev/null would
        if not data:
            return 0
        room = OUT_LIMIT - len(self.out)
        if room <= 0:
            return WOULD_BLOCK
        self.out += data[:room]
        return min(room, len(data))

    # the terminal's side
    def feed(self, data: bytes) -> int:
        """Queue typed input; how much was taken (the rest is offered again later)."""
        room = IN_LIMIT - len(self.inp)
        take = data[:max(0, room)]
        self.inp += take
        return len(take)

    def send_eof(self) -> None:
        self.eof = True

    def drain(self, n: int) -> bytes:
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def hang_up(self) -> None:
        self.hung_up = True
        self.out.clear()
