"""The Rv6 shell's grammar and executor (xv6's sh.c, with spawn instead of fork+exec).

Owns: the tokenizer, the parser into a command tree, the tree's printed form, and the
executor that walks a tree. It calls nothing but the abstract `sys` object it is given
(the names of `ShellSys`), so the grammar and the wiring are tested with an in-test fake
and run for real with `redleaf.rv6.ulib` by /bin/sh (rv6/user/sh.py). It does no I/O of
its own and imports nothing of the project.

Grammar (xv6's, plus quoting):

    line      := [list] EOF
    list      := pipeline ((';' | '&') pipeline)* [';' | '&']    '&' backgrounds the one before
    pipeline  := command ('|' command)*
    command   := '(' list ')' redir*  |  (WORD | redir)+
    redir     := ('<' | '>' | '>>') WORD

A WORD is a run of characters other than blanks and `<>|;&()'"\\`; '...' quotes
literally, "..." quotes with \\" and \\\\ as escapes, and a backslash outside quotes
takes the next character literally. A `#` where a word would start begins a comment
that runs to the end of the line (scripts). `str(tree)` prints a canonical line that parses back
to the same tree (redirections after the words, words quoted where needed).

Execution: a command is spawned from /bin/NAME (a name with a '/' is a path), with its
descriptors given to `spawn` as the list [stdin, stdout, stderr] of the shell's own
descriptors (pipe ends, files the shell opened for redirections); the shell then closes
its copies, so a pipe's reader sees EOF when the writer exits. `( ... )` runs in a
sub-shell: /bin/sh -c 'TEXT'. `cd DIR` is a built-in (outside a pipeline, as in xv6), and
so is `exit [N]`. The status of a list is its last command's, of a pipeline its last
command's, of a background job 0; a missing program is 127 (POSIX), a redirection
that cannot be opened 1, a syntax error 2 ("sh: syntax error near '|'").
Background jobs are not waited for: they are reaped when the shell exits (its orphans go
to init) or by a later `wait` of some other child; the contract's `wait` has no
non-blocking form.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol, Union

SPECIAL = set("<>|;&()")
QUOTES = set("'\"\\")
BLANKS = set(" \t\r\n")
BIN = "/bin/"
SH = "/bin/sh"

STATUS_SYNTAX = 2
STATUS_NOT_FOUND = 127
STATUS_CANNOT_RUN = 126


class ShellSyntaxError(ValueError):
    """The line does not parse; `near` is the token it stopped at ('newline' at the end)."""

    def __init__(self, near: str):
        self.near = near
        super().__init__(f"sh: syntax error near '{near}'")


# --- tokens ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tok:
    kind: str       # 'word' or an operator: < > >> | ; & ( )
    text: str


def tokenize(line: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in BLANKS:
            i += 1
            continue
        if c == "#":
            break               # a comment: the rest of the line
        if c in SPECIAL:
            if c == ">" and line.startswith(">>", i):
                toks.append(Tok(">>", ">>"))
                i += 2
            else:
                toks.append(Tok(c, c))
                i += 1
            continue
        word: list[str] = []
        while i < n and line[i] not in BLANKS and line[i] not in SPECIAL:
            c = line[i]
            if c == "'":
                j = line.find("'", i + 1)
                if j < 0:
                    raise ShellSyntaxError("'")
                word.append(line[i + 1:j])
                i = j + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        raise ShellSyntaxError('"')
                    c = line[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\" and i + 1 < n and line[i + 1] in '"\\':
                        word.append(line[i + 1])
                        i += 2
                    else:
                        word.append(c)
                        i += 1
            elif c == "\\":
                if i + 1 >= n:
                    raise ShellSyntaxError("\\")
                word.append(line[i + 1])
                i += 2
            else:
                word.append(c)
                i += 1
        toks.append(Tok("word", "".join(word)))
    return toks


def quote(word: str) -> str:
    """The word as the tokenizer reads it back: bare when it can be, else quoted."""
    if word and word[0] != "#" and not any(c in SPECIAL or c in QUOTES or c in BLANKS for c in word):
        return word
    if "'" not in word:
        return "'" + word + "'"
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the tree ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Redir:
    op: str         # '<', '>' or '>>'
    path: str

    def __str__(self) -> str:
        return f"{self.op} {quote(self.path)}"


@dataclass(frozen=True)
class Exec:
    argv: tuple[str, ...]
    redirs: tuple[Redir, ...] = ()

    def __str__(self) -> str:
        return " ".join([quote(a) for a in self.argv] + [str(r) for r in self.redirs])


@dataclass(frozen=True)
class Sub:
    body: "Node"
    redirs: tuple[Redir, ...] = ()

    def __str__(self) -> str:
        return " ".join([f"({self.body})"] + [str(r) for r in self.redirs])


@dataclass(frozen=True)
class Pipe:
    cmds: tuple[Union[Exec, Sub], ...]     # two or more

    def __str__(self) -> str:
        return " | ".join(str(c) for c in self.cmds)


@dataclass(frozen=True)
class Back:
    cmd: Union[Exec, Sub, Pipe]

    def __str__(self) -> str:
        return f"{self.cmd} &"


@dataclass(frozen=True)
class List:
    parts: tuple[Union[Exec, Sub, Pipe, Back], ...]    # two or more

    def __str__(self) -> str:
        out = ""
        for i, p in enumerate(self.parts):
            if i:
                # '&' already separates a background job from what follows
                out += " " if isinstance(self.parts[i - 1], Back) else "; "
            out += str(p)
        return out


Node = Union[Exec, Sub, Pipe, Back, List]


class _Parser:
    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i].kind if self.i < len(self.toks) else None

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self) -> ShellSyntaxError:
        return ShellSyntaxError(self.toks[self.i].text if self.i < len(self.toks) else "newline")

    def list(self, closer: str | None) -> Node:
        parts: list = []
        while True:
            p = self.pipeline()
            k = self.peek()
            if k == "&":
                self.take()
                p = Back(p)
            elif k == ";":
                self.take()
            parts.append(p)
            if k not in ("&", ";") or self.peek() in (closer, None):
                break
        if self.peek() != closer:
            raise self.error()
        return parts[0] if len(parts) == 1 else List(tuple(parts))

    def pipeline(self) -> Node:
        cmds = [self.command()]
        while self.peek() == "|":
            self.take()
            cmds.append(self.command())
        return cmds[0] if len(cmds) == 1 else Pipe(tuple(cmds))

    def redir(self) -> Redir:
        op = self.take().kind
        if self.peek() != "word":
            raise self.error()
        return Redir(op, self.take().text)

    def command(self) -> Exec | Sub:
        if self.peek() == "(":
            self.take()
            if self.peek() == ")":
                raise self.error()
            body = self.list(")")
            self.take()
            redirs = []
            while self.peek() in ("<", ">", ">>"):
                redirs.append(self.redir())
            if self.peek() in ("word", "("):
                raise self.error()
            return Sub(body, tuple(redirs))
        argv, redirs = [], []
        while True:
            k = self.peek()
            if k == "word":
                argv.append(self.take().text)
            elif k in ("<", ">", ">>"):
                redirs.append(self.redir())
            else:
                break
        if not argv and not redirs:
            raise self.error()
        if self.peek() == "(":
            raise self.error()
        return Exec(tuple(argv), tuple(redirs))


def parse(line: str) -> Node | None:
    """The command tree of `line`, None for a blank line; ShellSyntaxError otherwise."""
    toks = tokenize(line)
    if not toks:
        return None
    return _Parser(toks).list(None)


# --- execution ---------------------------------------------------------------------------

class ShellSys(Protocol):
    """What the executor calls: a subset of redleaf.rv6.ulib (the module itself fits)."""
    O_RDONLY: int
    O_WRONLY: int
    O_CREATE: int
    O_TRUNC: int
    O_APPEND: int

    def spawn(self, path: str, argv: list[str], fds: list[int] | None = None) -> int: ...
    def wait(self, pid: int = -1) -> tuple[int, int]: ...
    def pipe(self) -> tuple[int, int]: ...
    def open(self, path: str, flags: int) -> int: ...
    def close(self, fd: int) -> None: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def chdir(self, path: str) -> None: ...
    def exit(self, status: int) -> None: ...


class Shell:
    """Runs lines against `sys`. `err` is the descriptor error messages go to."""

    def __init__(self, sys: ShellSys, err: int = 2):
        self.sys = sys
        self.err = err
        self.status = 0

    def say(self, msg: str) -> None:
        try:
            self.sys.write(self.err, (msg + "\n").encode())
        except OSError:
            pass        # nowhere to report to; the status still says it

    def run_line(self, line: str) -> int:
        try:
            tree = parse(line)
        except ShellSyntaxError as e:
            self.say(str(e))
            self.status = STATUS_SYNTAX
            return self.status
        if tree is not None:
            self.status = self.run(tree)
        return self.status

    def run(self, node: Node) -> int:
        if isinstance(node, List):
            st = 0
            for p in node.parts:
                st = self.run(p)
            return st
        if isinstance(node, Back):
            self.start(node.cmd, 0, 1)
            return 0
        if isinstance(node, Exec) and node.argv and node.argv[0] in ("cd", "exit"):
            return self.builtin(node)
        return self.finish(self.start(node, 0, 1))

    def finish(self, started: list[tuple[int | None, int]]) -> int:
        """Wait for each started pid; the status is the last one's."""
        st = 0
        for pid, pre in started:
            st = pre if pid is None else self.sys.wait(pid)[1]
        return st

    def builtin(self, node: Exec) -> int:
        argv = node.argv
        if argv[0] == "cd":
            if len(argv) != 2:
                self.say("sh: cd: usage: cd DIR")
                return 1
            try:
                self.sys.chdir(argv[1])
            except OSError as e:
                self.say(f"sh: cd: {argv[1]}: {e.strerror or e}")
                return 1
            return 0
        try:
            code = int(argv[1]) if len(argv) > 1 else self.status
        except ValueError:
            self.say(f"sh: exit: {argv[1]}: a number is required")
            code = STATUS_SYNTAX
        self.sys.exit(code)
        return code     # a fake exit may return

    def open_redirs(self, redirs, fds: list[int], opened: list[int]) -> None:
        s = self.sys
        for r in redirs:
            if r.op == "<":
                fd, slot = s.open(r.path, s.O_RDONLY), 0
            elif r.op == ">":
                fd, slot = s.open(r.path, s.O_WRONLY | s.O_CREATE | s.O_TRUNC), 1
            else:
                fd, slot = s.open(r.path, s.O_WRONLY | s.O_CREATE | s.O_APPEND), 1
            opened.append(fd)
            fds[slot] = fd

    def start(self, node: Node, fin: int, fout: int) -> list[tuple[int | None, int]]:
        """Spawn `node` with stdin `fin` and stdout `fout` (the shell's descriptors); the
        (pid, status) of each process started, pid None with the status of one that could
        not be."""
        if isinstance(node, Pipe):
            started = []
            cur_in = fin
            for i, c in enumerate(node.cmds):
                last = i == len(node.cmds) - 1
                r = w = None
                if not last:
                    try:
                        r, w = self.sys.pipe()
                    except OSError as e:
                        self.say(f"sh: pipe: {e.strerror or e}")
                        started.append((None, 1))
                        break
                started += self.start(c, cur_in, fout if last else w)
                # the shell's copies go now: the reader sees EOF once the writer exits
                if w is not None:
                    self.sys.close(w)
                if cur_in != fin:
                    self.sys.close(cur_in)
                cur_in = r
            if cur_in is not None and cur_in != fin:
                self.sys.close(cur_in)
            return started
        fds = [fin, fout, 2]
        opened: list[int] = []
        try:
            redirs = node.redirs if isinstance(node, (Exec, Sub)) else ()
            try:
                self.open_redirs(redirs, fds, opened)
            except OSError as e:
                bad = next(r.path for r in redirs[len(opened):])
                self.say(f"sh: {bad}: {e.strerror or e}")
                return [(None, 1)]
            if isinstance(node, Exec):
                if not node.argv:
                    return [(None, 0)]          # `> f` alone: the file is made, nothing runs
                name = node.argv[0]
                path = name if "/" in name else BIN + name
                argv = list(node.argv)
            else:
                body = node.body if isinstance(node, Sub) else node
                path, argv = SH, ["sh", "-c", str(body)]
                name = "sh"
            try:
                return [(self.sys.spawn(path, argv, fds), 0)]
            except OSError as e:
                if e.errno == errno.ENOENT:
                    self.say(f"sh: {name}: not found")
                    return [(None, STATUS_NOT_FOUND)]
                self.say(f"sh: {name}: {e.strerror or e}")
                return [(None, STATUS_CANNOT_RUN)]
        finally:
            for fd in opened:
                self.sys.close(fd)
