"""The shell's grammar (pure) and its executor's wiring, against an in-test fake `sys` that
records what the shell asks for: which program, which argv, which descriptors."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from redleaf.rv6.shell import (STATUS_NOT_FOUND, STATUS_SYNTAX, Back, Exec, List, Pipe, Redir,
                               Shell, ShellSyntaxError, Sub, parse, quote, tokenize)

# --- parsing ------------------------------------------------------------------------------


def test_simple_and_redirections():
    assert parse("ls -l /bin") == Exec(("ls", "-l", "/bin"))
    assert parse("cat < in > out") == Exec(("cat",), (Redir("<", "in"), Redir(">", "out")))
    assert parse("echo x >> log") == Exec(("echo", "x"), (Redir(">>", "log"),))
    assert parse(">f echo   hi") == Exec(("echo", "hi"), (Redir(">", "f"),))
    assert parse("") is None and parse("   \t\n") is None


def test_comments():
    assert parse("# a comment") is None
    assert parse("echo a # b | c") == Exec(("echo", "a"))
    assert parse("echo a#b '#c'") == Exec(("echo", "a#b", "#c"))


def test_pipes_lists_background_and_parentheses():
    a, b, c = Exec(("a",)), Exec(("b",)), Exec(("c",))
    assert parse("a | b | c") == Pipe((a, b, c))
    assert parse("a; b; c") == List((a, b, c))
    assert parse("a; b;") == List((a, b))
    assert parse("a & b") == List((Back(a), b))
    assert parse("a | b &") == Back(Pipe((a, b)))
    assert parse("(a; b) | c > f") == Pipe((Sub(List((a, b))), Exec(("c",), (Redir(">", "f"),))))
    assert parse("(a | b) > out") == Sub(Pipe((a, b)), (Redir(">", "out"),))
    assert parse("((a))") == Sub(Sub(a))


def test_quoting():
    assert parse("echo 'a b' \"c \\\" d\" e\\ f 'x'y") == Exec(("echo", "a b", 'c " d', "e f", "xy"))
    assert parse("echo '|;&<>()'") == Exec(("echo", "|;&<>()"))
    assert parse("echo ''") == Exec(("echo", ""))
    for w in ["plain", "", "a b", "it's", 'say "hi"', "back\\slash", "|", "x>y", "#x", "a#b"]:
        assert tokenize(quote(w))[0].text == w


@pytest.mark.parametrize("line,near", [
    ("| a", "|"), ("a |", "newline"), ("a ;; b", ";"), ("; a", ";"), ("()", ")"),
    ("a (b)", "("), ("(a", "newline"), ("a)", ")"), ("a >", "newline"), ("a > |", "|"),
    ("echo \"x", '"'), ("echo 'x", "'"), ("a & ; b", ";"), ("(a) b", "b"), ("a && b", "&"),
])
def test_syntax_errors_name_the_token(line, near):
    with pytest.raises(ShellSyntaxError) as e:
        parse(line)
    assert e.value.near == near
    assert str(e.value) == f"sh: syntax error near '{near}'"


# hypothesis: trees print to lines that parse back to themselves

words = hs.text(alphabet=hs.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=6)
redirs = hs.lists(hs.builds(Redir, hs.sampled_from(["<", ">", ">>"]), words), max_size=2).map(tuple)


def _trees():
    simple = hs.builds(Exec, hs.lists(words, min_size=1, max_size=3).map(tuple), redirs)

    def extend(inner):
        sub = hs.builds(Sub, inner, redirs)
        cmd = hs.one_of(simple, sub)
        pipe = hs.lists(cmd, min_size=2, max_size=3).map(lambda cs: Pipe(tuple(cs)))
        item = hs.one_of(cmd, pipe)
        part = hs.one_of(item, item.map(Back))
        lst = hs.lists(part, min_size=2, max_size=3).map(lambda ps: List(tuple(ps)))
        return hs.one_of(cmd, pipe, item.map(Back), lst)

    return hs.recursive(simple, extend, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(_trees())
def test_printed_tree_parses_back(tree):
    assert parse(str(tree)) == tree
    assert str(parse(str(tree))) == str(tree)


@settings(max_examples=300, deadline=None)
@given(hs.lists(hs.sampled_from(["ls", "a b", "|", ";", "&", "<", ">", ">>", "(", ")", "x", "'q r'",
                                 "\"s\"", " "]), max_size=12).map(" ".join))
def test_random_lines_parse_or_raise_only_syntax_errors(line):
    try:
        tree = parse(line)
    except ShellSyntaxError:
        return
    assert tree is None or parse(str(tree)) == tree


@settings(max_examples=500, deadline=None)
@given(hs.text(max_size=40))
def test_garbage_never_raises_anything_else(line):
    try:
        parse(line)
    except ShellSyntaxError:
        pass


# --- executing against a fake sys ------------------------------------------------------------

class FakeSys:
    """Records the shell's calls. Programs are Python callables (argv, stdin bytes) ->
    (status, stdout bytes); pipes and files are byte buffers; spawn runs the program at
    once (the shell closes its pipe ends in an order that makes this work)."""

    O_RDONLY, O_WRONLY, O_RDWR, O_CREATE, O_TRUNC, O_APPEND = 0, 1, 2, 0x200, 0x400, 0x800

    def __init__(self, programs):
        self.programs = programs
        self.files: dict[str, bytearray] = {}
        self.fds: dict[int, tuple] = {0: ("console",), 1: ("console",), 2: ("console",)}
        self.console = bytearray()
        self.spawned: list[tuple[str, list[str], list[int]]] = []
        self.statuses: dict[int, int] = {}
        self.cwd = "/"
        self.exited = None
        self.next_pid = 100

    def _fd(self):
        fd = 0
        while fd in self.fds:
            fd += 1
        return fd

    def spawn(self, path, argv, fds=None):
        prog = self.programs.get(path)
        if prog is None:
            raise OSError(errno.ENOENT, "no such file")
        self.spawned.append((path, list(argv), list(fds)))
        ends = [self.fds[fd] for fd in fds]
        src = ends[0]
        stdin = bytes(src[1]) if src[0] in ("pipe-r", "file") else b""
        status, out = prog(argv, stdin)
        dst = ends[1]
        if dst[0] == "console":
            self.console += out
        else:
            dst[1].extend(out)
        self.next_pid += 1
        self.statuses[self.next_pid] = status
        return self.next_pid

    def wait(self, pid=-1):
        return pid, self.statuses.pop(pid)

    def pipe(self):
        buf = bytearray()
        r = self._fd()
        self.fds[r] = ("pipe-r", buf)
        w = self._fd()
        self.fds[w] = ("pipe-w", buf)
        return r, w

    def open(self, path, flags):
        if flags & 3 == self.O_RDONLY:
            if path not in self.files:
                raise OSError(errno.ENOENT, "No such file or directory")
        elif flags & self.O_TRUNC or path not in self.files:
            self.files[path] = bytearray()
        fd = self._fd()
        self.fds[fd] = ("file", self.files[path])
        return fd

    def close(self, fd):
        del self.fds[fd]

    def write(self, fd, data):
        assert fd == 2
        self.console += data
        return len(data)

    def chdir(self, path):
        if path == "missing":
            raise OSError(errno.ENOENT, "No such file or directory")
        self.cwd = path

    def exit(self, status):
        self.exited = status


def _echo(argv, stdin):
    return 0, (" ".join(argv[1:]) + "\n").encode()


def _cat(argv, stdin):
    return 0, stdin


def _upper(argv, stdin):
    return 0, stdin.upper()


def _fail(argv, stdin):
    return 3, b""


def _wc(argv, stdin):
    lines = stdin.count(b"\n")
    return 0, f"{lines} {len(stdin.split())} {len(stdin)}\n".encode()


def _sh(argv, stdin):
    return 0, f"[sub {argv[2]}]\n".encode()


PROGS = {"/bin/echo": _echo, "/bin/cat": _cat, "/bin/upper": _upper, "/bin/false": _fail,
         "/bin/wc": _wc, "/bin/sh": _sh, "/usr/tool": _echo}


@pytest.fixture
def sh():
    fs = FakeSys(PROGS)
    return Shell(fs), fs


def test_exec_resolves_bin_and_paths(sh):
    shell, fs = sh
    assert shell.run_line("echo hi there") == 0
    assert fs.spawned == [("/bin/echo", ["echo", "hi", "there"], [0, 1, 2])]
    assert shell.run_line("/usr/tool x") == 0 and fs.spawned[-1][0] == "/usr/tool"
    assert bytes(fs.console) == b"hi there\nx\n"


def test_pipeline_of_three_and_status_of_the_last(sh):
    shell, fs = sh
    assert shell.run_line("echo abc | upper | wc") == 0
    assert bytes(fs.console) == b"1 1 4\n"
    assert [s[0] for s in fs.spawned] == ["/bin/echo", "/bin/upper", "/bin/wc"]
    # every pipe end the shell made is closed again
    assert set(fs.fds) == {0, 1, 2}
    assert shell.run_line("false | cat") == 0
    assert shell.run_line("cat | false") == 3


def test_redirections_both_ways(sh):
    shell, fs = sh
    assert shell.run_line("echo one > f") == 0 and bytes(fs.files["f"]) == b"one\n"
    assert shell.run_line("echo two >> f") == 0 and bytes(fs.files["f"]) == b"one\ntwo\n"
    assert shell.run_line("upper < f > g") == 0 and bytes(fs.files["g"]) == b"ONE\nTWO\n"
    assert shell.run_line("echo three > f") == 0 and bytes(fs.files["f"]) == b"three\n"
    assert shell.run_line("> empty") == 0 and bytes(fs.files["empty"]) == b""
    assert shell.run_line("cat < nofile") == 1
    assert b"sh: nofile: No such file or directory" in fs.console
    assert set(fs.fds) == {0, 1, 2}


def test_list_status_is_the_last_commands(sh):
    shell, fs = sh
    assert shell.run_line("false; echo x") == 0
    assert shell.run_line("echo x; false") == 3
    assert shell.status == 3


def test_missing_program_and_syntax_error(sh):
    shell, fs = sh
    assert shell.run_line("nosuch arg") == STATUS_NOT_FOUND
    assert b"sh: nosuch: not found\n" in fs.console
    assert shell.run_line("echo a | | b") == STATUS_SYNTAX
    assert b"sh: syntax error near '|'\n" in fs.console
    assert shell.run_line("nosuch | wc") == 0        # the pipeline's last command ran


def test_cd_is_builtin(sh):
    shell, fs = sh
    assert shell.run_line("cd /tmp") == 0 and fs.cwd == "/tmp" and fs.spawned == []
    assert shell.run_line("cd missing") == 1 and b"sh: cd: missing:" in fs.console
    assert shell.run_line("cd") == 1


def test_exit_builtin(sh):
    shell, fs = sh
    shell.run_line("false")
    shell.run_line("exit")
    assert fs.exited == 3
    shell.run_line("exit 7")
    assert fs.exited == 7


def test_parentheses_run_a_subshell_with_the_redirections(sh):
    shell, fs = sh
    assert shell.run_line("(echo a; echo b) > out") == 0
    path, argv, fds = fs.spawned[-1]
    assert path == "/bin/sh" and argv == ["sh", "-c", "echo a; echo b"] and fds[1] not in (0, 1, 2)
    assert bytes(fs.files["out"]) == b"[sub echo a; echo b]\n"


def test_background_is_not_waited_for(sh):
    shell, fs = sh
    assert shell.run_line("false &") == 0
    assert len(fs.statuses) == 1            # spawned, its status not collected
    assert shell.run_line("echo a | cat &") == 0
    assert [s[1] for s in fs.spawned[-2:]] == [["echo", "a"], ["cat"]]
    assert len(fs.statuses) == 3 and set(fs.fds) == {0, 1, 2}


@settings(max_examples=300, deadline=None)
@given(hs.lists(hs.sampled_from(["echo a", "cat", "upper", "false", "nosuch", "wc", "|", "|", ";", "&",
                                 "< f", "> f", ">> g", "< missing", "(", ")", "cd /x", "exit 3"]),
                max_size=10).map(" ".join))
def test_any_line_leaves_no_descriptor_open_and_raises_nothing(line):
    fs = FakeSys(PROGS)
    fs.files["f"] = bytearray(b"data\n")
    shell = Shell(fs)
    status = shell.run_line(line)
    assert isinstance(status, int)
    assert set(fs.fds) == {0, 1, 2}, (line, fs.fds)
