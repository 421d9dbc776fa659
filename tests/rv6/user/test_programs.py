"""Each user program of rv6/user and the shell's wiring, run from /bin of a fake kernel
(fake_ulib: the ulib contract over the pure fs, programs in threads), through `sh -c` as a
user would type them."""

from __future__ import annotations

import pytest

from redleaf.rv6.fs.mkfs import user_programs

EXPECTED = {"init", "sh", "cat", "echo", "grep", "kill", "ln", "ls", "mkdir", "rm", "wc",
            "stressfs", "spawntest", "zombie", "cp", "mv", "stat", "head", "touch", "rmdir",
            "usertests"}


def test_every_program_is_installed(rv6):
    assert set(user_programs()) == EXPECTED
    for name, src in user_programs().items():
        assert rv6.read(f"/bin/{name}") == src


def test_every_program_uses_only_ulib_for_io():
    """The contract: all I/O through ulib (no open/print/os), imports from redleaf.rv6 only."""
    import ast
    for name, src in user_programs().items():
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "open", "input"), f"{name} calls {node.func.id}"
            if isinstance(node, ast.ImportFrom):
                assert node.module in ("redleaf.rv6",) or node.module in ("re", "errno"), \
                    f"{name} imports from {node.module}"
            if isinstance(node, ast.Import):
                assert all(a.name in ("re", "errno") for a in node.names), f"{name} imports {node.names}"
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), name


def test_echo_cat_wc(rv6):
    assert rv6.sh("echo hello   world") == (0, "hello world\n")
    assert rv6.sh("echo") == (0, "\n")
    rv6.write("/a", "one two\nthree\n")
    rv6.write("/b", "four\n")
    assert rv6.sh("cat /a /b") == (0, "one two\nthree\nfour\n")
    assert rv6.sh("cat", stdin=b"typed\n") == (0, "typed\n")
    assert rv6.sh("wc /a") == (0, "2 3 14 /a\n")
    assert rv6.sh("wc < /a") == (0, "2 3 14 \n")
    st, out = rv6.sh("cat /nope")
    assert st == 1 and "cat: cannot open /nope" in out
    st, out = rv6.sh("cat /")
    assert st == 1 and "is a directory" in out


def test_wc_counts_words_across_chunks(rv6):
    data = ("word " * 3000 + "\n") * 3           # chunk boundaries fall inside words
    rv6.write("/big", data)
    assert rv6.sh("wc /big") == (0, f"3 9000 {len(data)} /big\n")


def test_grep(rv6):
    rv6.write("/t", "apple\nbanana\ncherry\napricot")
    assert rv6.sh("grep ^ap /t") == (0, "apple\napricot\n")
    assert rv6.sh("grep 'an.n' /t") == (0, "banana\n")
    assert rv6.sh("grep y$ /t") == (0, "cherry\n")
    assert rv6.sh("grep zzz /t")[0] == 1
    assert rv6.sh("cat /t | grep rr") == (0, "cherry\n")
    rv6.write("/u", "grape\n")
    assert rv6.sh("grep ap /t /u") == (0, "/t:apple\n/t:apricot\n/u:grape\n")
    st, out = rv6.sh("grep '(' /t")
    assert st == 2 and "bad pattern" in out


def test_ls_in_xv6_format(rv6):
    rv6.sh("mkdir /d; echo abc > /d/f")
    st, out = rv6.sh("ls /d")
    assert st == 0
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows] == [".", "..", "f"]
    assert rows[2][1:] == ["2", rows[2][2], "4"] and rows[0][1] == "1"
    assert out.splitlines()[2].startswith("f" + " " * 13 + " ")      # name padded to 14
    st, out = rv6.sh("ls /d/f")
    assert st == 0 and out.split()[0] == "f" and out.split()[3] == "4"
    st, out = rv6.sh("ls /missing")
    assert st == 1 and "ls: cannot stat /missing" in out


def test_mkdir_rmdir_rm(rv6):
    assert rv6.sh("mkdir /x /x/y")[0] == 0
    st, out = rv6.sh("rmdir /x")
    assert st == 1 and "rmdir: /x:" in out
    assert rv6.sh("rmdir /x/y /x")[0] == 0
    st, out = rv6.sh("mkdir /x/y")
    assert st == 1
    rv6.sh("mkdir /t; mkdir /t/u; echo 1 > /t/a; echo 2 > /t/u/b")
    st, out = rv6.sh("rm /t")
    assert st == 1 and "is a directory" in out
    assert rv6.sh("rm -r /t") == (0, "")
    assert rv6.sh("ls /t")[0] == 1
    assert rv6.sh("rm -f /nothing") == (0, "")
    assert rv6.sh("rm /nothing")[0] == 1


def test_ln_cp_mv_stat_touch(rv6):
    rv6.write("/src", "data\n")
    assert rv6.sh("ln /src /hard")[0] == 0
    st, out = rv6.sh("stat /src")
    assert st == 0 and "nlink: 2" in out and "size: 5" in out and "type: 2 (file)" in out
    assert rv6.sh("ln /src /hard")[0] == 1
    assert rv6.sh("cp /src /copy")[0] == 0 and rv6.read("/copy") == b"data\n"
    rv6.sh("mkdir /dir")
    assert rv6.sh("cp /src /dir")[0] == 0 and rv6.read("/dir/src") == b"data\n"
    assert rv6.sh("mv /copy /moved")[0] == 0 and rv6.read("/moved") == b"data\n"
    assert rv6.sh("ls /copy")[0] == 1
    assert rv6.sh("mv /moved /dir")[0] == 0 and rv6.read("/dir/moved") == b"data\n"
    assert rv6.sh("touch /new /src")[0] == 0
    assert rv6.read("/new") == b"" and rv6.read("/src") == b"data\n"
    st, out = rv6.sh("cp /nope /x")
    assert st == 1 and "cp: cannot open /nope" in out
    st, out = rv6.sh("stat /nope")
    assert st == 1


def test_head(rv6):
    rv6.write("/n", "".join(f"{i}\n" for i in range(30)))
    assert rv6.sh("head /n") == (0, "".join(f"{i}\n" for i in range(10)))
    assert rv6.sh("head -n 3 /n") == (0, "0\n1\n2\n")
    assert rv6.sh("cat /n | head -n 2") == (0, "0\n1\n")
    assert rv6.sh("head -n 0 /n") == (0, "")
    assert rv6.sh("head -n x /n")[0] == 2


def test_kill_of_a_bad_pid(rv6):
    st, out = rv6.sh("kill 9999")
    assert st == 1 and "kill: 9999:" in out
    assert rv6.sh("kill abc")[0] == 1
    assert rv6.sh("kill")[0] == 2


def test_shell_pipelines_redirections_cd_and_status(rv6):
    rv6.write("/words", "b\na\nc\na\n")
    assert rv6.sh("cat /words | grep a | wc") == (0, "2 2 4 \n")
    assert rv6.sh("grep a < /words > /out; cat /out") == (0, "a\na\n")
    assert rv6.sh("echo more >> /out; wc < /out") == (0, "3 3 9 \n")
    assert rv6.sh("mkdir /w; cd /w; echo hi > f; cat /w/f") == (0, "hi\n")
    assert rv6.sh("cd /w; cat f") == (0, "hi\n")
    assert rv6.sh("grep zzz /words; echo after")[0] == 0
    assert rv6.sh("echo before; grep zzz /words")[0] == 1
    assert rv6.sh("grep zzz /words | wc")[0] == 0
    assert rv6.sh("(echo a; echo b) | wc") == (0, "2 2 4 \n")
    assert rv6.sh("(cd /w; cat f); cat f")[0] == 1      # the sub-shell's cd stays in it
    assert rv6.sh("nosuch") == (127, "sh: nosuch: not found\n")
    assert rv6.sh("echo a | | wc") == (2, "sh: syntax error near '|'\n")
    assert rv6.sh("exit 5; echo never") == (5, "")
    assert rv6.sh("echo bg > /bgout & echo fg")[1] == "fg\n"
    assert rv6.read("/bgout") == b"bg\n"


def test_interactive_shell_and_script(rv6):
    st, out = rv6.run("sh", stdin=b"echo one\ncd /bin\nls > /listing; echo two\ngrep zz /bin/cat\n")
    assert out.startswith("$ one\n$ $ ") and "two\n" in out and out.endswith("$ ")
    assert st == 1                      # the last command's status
    assert b"cat " in rv6.read("/listing")      # `ls` ran in /bin, the cd's directory
    rv6.write("/script", "echo s1\nexit 4\necho s2\n")
    assert rv6.run("sh", "/script") == (4, "s1\n")


def test_a_program_that_raises_exits_1_with_a_summary(rv6):
    rv6.write("/bin/boom", "def main(argv):\n    raise ValueError('bad thing')\n")
    st, out = rv6.sh("boom; echo still here")
    assert st == 0 and "boom: ValueError: bad thing" in out and out.endswith("still here\n")
    assert rv6.sh("boom")[0] == 1
    rv6.write("/bin/broken", "def main(argv:\n")
    st, out = rv6.sh("broken")
    assert st == 1 and "SyntaxError" in out


def test_stressfs_spawntest_zombie(rv6, kernel):
    assert rv6.sh("stressfs") == (0, "stressfs starting\nstressfs: ok\n")
    st, out = rv6.sh("spawntest 20")
    assert st == 0 and out == "spawntest: OK (20 children)\n"
    st, out = rv6.sh("spawntest 500")            # the fake's table is full first: EAGAIN
    assert st == 0 and "spawntest: OK (" in out
    st, out = rv6.sh("zombie")
    assert st == 0 and "leaves child" in out and "orphan" in out and "done" in out


def test_init_makes_the_console_and_reaps_the_orphans(kernel):
    """init's shell runs `zombie`: its orphan goes to init, which reaps it."""
    with pytest.raises(OSError):
        kernel.fs.stat("/dev/console")
    kernel.console.input[:] = b"zombie\necho done\n"
    pid = kernel.start(["init", "1"], as_init=True)
    assert kernel.join(pid) == 0
    out = kernel.console.text()
    assert "leaves child" in out and "orphan" in out and "done\n" in out
    assert kernel.fs.stat("/dev/console").st_rdev == __import__("os").makedev(1, 0)
    assert kernel.procs == {}                           # every orphan reaped


def test_kill_ends_a_program_with_137(rv6, kernel):
    rv6.write("/bin/spin", "from redleaf.rv6 import ulib\n\ndef main(argv):\n"
                          "    while True:\n        ulib.sleep(5)\n")
    pid = kernel.start(["spin"])
    kernel.kill(pid)
    assert kernel.join(pid) == 137


def test_a_writer_whose_reader_left_ends_quietly(rv6):
    """`cat big | head -n 1`: cat's write fails with EPIPE once head is gone; it ends with
    141 (128 + SIGPIPE) and says nothing, as on Unix."""
    rv6.write("/big", "".join(f"line {i}\n" for i in range(20000)))
    assert rv6.sh("cat /big | head -n 1") == (0, "line 0\n")
    assert rv6.sh("cat /big | head -n 1 | wc") == (0, "1 2 7 \n")
    assert rv6.sh("(cat /big | grep line | head -n 2)") == (0, "line 0\nline 1\n")
