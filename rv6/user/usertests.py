"""usertests [-l] [NAME...]: xv6's usertests re-expressed for Rv6's system-call set.

Every case is a function below (CASES lists them in order). Each runs in a process of its
own (`usertests -case NAME`, spawned and waited for), so a case that crashes or is killed
fails alone and leaves its parent intact, as xv6's run() forks one. Prints
"test NAME: OK" / "test NAME: FAILED" for each, then "ALL TESTS PASSED" and exits 0 only
if every case passed ("SOME TESTS FAILED", status 1, otherwise). `usertests NAME...` runs
only those; `-l` lists the names. Files are made in the working directory, with xv6's
names; each case removes what it made.

Where xv6 counts on its limits (14-byte names, fork's -1), the cases check this system's
contract instead: names up to 60 bytes, a killed process's status 137, errors as Rv6Error
with a POSIX errno, writes past the end of a truncated file making a hole (POSIX).
Children of a case are `usertests -child ROLE ARGS...`.
"""

import errno

from redleaf.rv6 import ulib

ME = "/bin/usertests"
KILLED = 137


class Fail(Exception):
    pass


def check(cond, msg, *args):
    if not cond:
        raise Fail(msg % args if args else msg)


def fails(fn, *args, want=None):
    """`fn(*args)` must raise Rv6Error (with errno `want`, if given); the errno."""
    try:
        fn(*args)
    except ulib.Rv6Error as e:
        check(want is None or e.errno == want, "%s%r: errno %s, expected %s", fn.__name__, args,
              errno.errorcode.get(e.errno, e.errno), errno.errorcode.get(want, want))
        return e.errno
    raise Fail("%s%r succeeded; it should fail" % (fn.__name__, args))


def rm(path):
    try:
        ulib.unlink(path)
    except ulib.Rv6Error:
        pass


def rmtree(path):
    try:
        s = ulib.stat(path)
    except ulib.Rv6Error:
        return
    if s.type == ulib.T_DIR:
        for name, _i, _t in ulib.readdir(path):
            if name not in (".", ".."):
                rmtree(path + "/" + name)
        ulib.rmdir(path)
    else:
        ulib.unlink(path)


def create(path, data=b""):
    fd = ulib.open(path, ulib.O_CREATE | ulib.O_WRONLY | ulib.O_TRUNC)
    if data:
        check(ulib.write(fd, data) == len(data), "short write to %s", path)
    ulib.close(fd)


def slurp(path):
    fd = ulib.open(path, ulib.O_RDONLY)
    try:
        return ulib.read_all(fd)
    finally:
        ulib.close(fd)


def child(role, *args, fds=None):
    return ulib.spawn(ME, ["usertests", "-child", role, *map(str, args)], fds)


def reap(pid, status=0):
    wpid, st = ulib.wait(pid)
    check(wpid == pid, "wait(%d) returned pid %d", pid, wpid)
    check(status is None or st == status, "child %d exited %d, expected %d", pid, st, status)
    return st


def expect_error(fn, *args):
    """A call with bad arguments fails cleanly: Rv6Error, or the library's own TypeError /
    ValueError before the call leaves the process; never a crash."""
    try:
        fn(*args)
    except (ulib.Rv6Error, TypeError, ValueError):
        return
    raise Fail("%s with bad arguments %r succeeded" % (fn.__name__, args))


# --- children (usertests -child ROLE ...) -------------------------------------------------

def c_exit(status):
    return int(status)


def c_spin():
    while True:
        ulib.getpid()       # a system call each turn, so any kernel can deliver the kill


def c_pipewriter(n, size):
    seq = 0
    for _ in range(int(n)):
        ulib.write(1, bytes((seq + j) & 0xFF for j in range(int(size))))
        seq += int(size)
    return 0


def c_writebyte():
    ulib.write(1, b"x")
    return 0


def c_truncate3():
    for _ in range(30):
        fd = ulib.open("truncfile", ulib.O_WRONLY)
        ulib.write(fd, b"1234567890")
        ulib.close(fd)
        fd = ulib.open("truncfile", ulib.O_RDONLY)
        ulib.read(fd, 64)
        ulib.close(fd)
    return 0


def c_openiput():
    try:
        fd = ulib.open("oidir", ulib.O_RDWR)
    except ulib.Rv6Error as e:
        return 0 if e.errno in (errno.EISDIR, errno.ENOENT) else 1
    ulib.close(fd)
    return 1


def c_exitiput():
    ulib.mkdir("iputdir")
    ulib.chdir("iputdir")
    ulib.rmdir("../iputdir")
    return 0


def c_orphaner():
    child("exit", 0)
    return 0            # without waiting: the grandchild goes to init


def c_spawner(n):
    for _ in range(int(n)):
        reap(child("exit", 0))
    return 0


def c_sharedfd(ch):
    for _ in range(100):
        ulib.write(3, ch.encode() * 10)
    return 0


def c_fourfiles(i):
    fd = ulib.open("f%s" % i, ulib.O_CREATE | ulib.O_RDWR | ulib.O_TRUNC)
    for _ in range(12):
        check(ulib.write(fd, (chr(ord("0") + int(i))).encode() * 500) == 500, "short write")
    ulib.close(fd)
    return 0


def c_createdelete(pi):
    for i in range(20):
        create("p%s%d" % (pi, i))
        if i % 2 == 0:
            ulib.unlink("p%s%d" % (pi, i // 2))
    return 0


def c_concreate(role):
    return concreate_body(int(role))


def c_linkunlink(seed):
    x = int(seed)
    for _ in range(100):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        try:
            if x % 3 == 0:
                ulib.close(ulib.open("lux", ulib.O_RDWR | ulib.O_CREATE))
            elif x % 3 == 1:
                ulib.link("lusrc", "lux")
            else:
                ulib.unlink("lux")
        except ulib.Rv6Error:
            pass
    return 0


def c_manywrites(i):
    name = "mw%s" % i
    for _ in range(2):
        rm(name)
        fd = ulib.open(name, ulib.O_CREATE | ulib.O_RDWR)
        for _ in range(20):
            check(ulib.write(fd, b"m" * 4096) == 4096, "short write")
        ulib.close(fd)
        ulib.unlink(name)
    return 0


CHILDREN = {
    "exit": c_exit, "spin": c_spin, "pipewriter": c_pipewriter, "writebyte": c_writebyte,
    "truncate3": c_truncate3, "openiput": c_openiput, "exitiput": c_exitiput,
    "orphaner": c_orphaner, "spawner": c_spawner, "sharedfd": c_sharedfd,
    "fourfiles": c_fourfiles, "createdelete": c_createdelete, "concreate": c_concreate,
    "linkunlink": c_linkunlink, "manywrites": c_manywrites,
}


# --- the cases ----------------------------------------------------------------------------

def copyin():
    """Bad buffers and arguments passed into the kernel fail cleanly, and it still works."""
    create("copyin1", b"x")
    fd = ulib.open("copyin1", ulib.O_WRONLY)
    try:
        for bad in (None, "a str", 1.5):
            expect_error(ulib.write, fd, bad)
        expect_error(ulib.write, "not-a-fd", b"x")
        expect_error(ulib.open, None, ulib.O_RDONLY)
        expect_error(ulib.open, 42, ulib.O_RDONLY)
        expect_error(ulib.link, 1, 2)
        expect_error(ulib.mkdir, None)
        expect_error(ulib.spawn, ME, None)
        expect_error(ulib.spawn, ME, ["usertests", 7])
        expect_error(ulib.spawn, ME, ["usertests"], ["bad fds"])
        check(ulib.write(fd, b"ok") == 2, "write after bad calls")
    finally:
        ulib.close(fd)
    check(slurp("copyin1") == b"ok", "file content after bad writes")
    ulib.unlink("copyin1")


def copyout():
    """Bad arguments for calls that return data fail cleanly."""
    create("copyout1", b"hello")
    fd = ulib.open("copyout1", ulib.O_RDONLY)
    try:
        expect_error(ulib.read, fd, -1)
        expect_error(ulib.read, fd, "ten")
        expect_error(ulib.read, fd, None)
        expect_error(ulib.read, 99, 1)
        expect_error(ulib.fstat, -1)
        expect_error(ulib.readdir, 123)
        expect_error(ulib.stat, None)
        check(ulib.read(fd, 100) == b"hello", "read after bad calls")
    finally:
        ulib.close(fd)
    ulib.unlink("copyout1")


def truncate1():
    rm("truncfile")
    create("truncfile", b"abcd")
    fd2 = ulib.open("truncfile", ulib.O_RDONLY)
    check(ulib.read(fd2, 32) == b"abcd", "read before truncation")
    fd1 = ulib.open("truncfile", ulib.O_WRONLY | ulib.O_TRUNC)
    fd3 = ulib.open("truncfile", ulib.O_RDONLY)
    check(ulib.read(fd3, 32) == b"", "read after truncation through a new fd")
    check(ulib.read(fd2, 32) == b"", "read after truncation through the old fd")
    ulib.write(fd1, b"abcdef")
    check(ulib.read(fd3, 32) == b"abcdef", "read of the rewritten file")
    check(ulib.read(fd2, 32) == b"ef", "the old fd reads from its offset")
    ulib.unlink("truncfile")
    for fd in (fd1, fd2, fd3):
        ulib.close(fd)


def truncate2():
    """A write through a descriptor whose file was truncated under it lands at its old
    offset, leaving a hole (POSIX; xv6 refuses it)."""
    rm("truncfile")
    fd1 = ulib.open("truncfile", ulib.O_CREATE | ulib.O_TRUNC | ulib.O_WRONLY)
    ulib.write(fd1, b"abcd")
    fd2 = ulib.open("truncfile", ulib.O_TRUNC | ulib.O_WRONLY)
    check(ulib.write(fd1, b"x") == 1, "write past the end")
    check(slurp("truncfile") == b"\0\0\0\0x", "hole then the byte")
    ulib.unlink("truncfile")
    ulib.close(fd1)
    ulib.close(fd2)


def truncate3():
    """Truncation racing reads and writes of another process."""
    create("truncfile")
    pid = child("truncate3")
    for _ in range(50):
        fd = ulib.open("truncfile", ulib.O_CREATE | ulib.O_WRONLY | ulib.O_TRUNC)
        check(ulib.write(fd, b"xxx") == 3, "write")
        ulib.close(fd)
    reap(pid)
    ulib.unlink("truncfile")


def openiput():
    ulib.mkdir("oidir")
    pid = child("openiput")
    ulib.rmdir("oidir")
    reap(pid)


def exitiput():
    """A process exits with a removed directory as its cwd."""
    reap(child("exitiput"))
    fails(ulib.stat, "iputdir", want=errno.ENOENT)


def iput():
    here = ulib.getcwd()
    ulib.mkdir("iputdir")
    ulib.chdir("iputdir")
    ulib.rmdir(here.rstrip("/") + "/iputdir")
    ulib.chdir(here)
    fails(ulib.stat, "iputdir", want=errno.ENOENT)


def opentest():
    ulib.close(ulib.open("/bin/echo", ulib.O_RDONLY))
    fails(ulib.open, "doesnotexist", ulib.O_RDONLY, want=errno.ENOENT)


def writetest():
    rm("small")
    fd = ulib.open("small", ulib.O_CREATE | ulib.O_RDWR)
    for _ in range(100):
        check(ulib.write(fd, b"aaaaaaaaaa") == 10, "write a")
        check(ulib.write(fd, b"bbbbbbbbbb") == 10, "write b")
    ulib.close(fd)
    data = slurp("small")
    check(data == b"aaaaaaaaaabbbbbbbbbb" * 100, "read back %d bytes", len(data))
    ulib.unlink("small")


def writebig():
    """A file past the direct blocks, each block stamped with its number."""
    n, bs = 200, 4096
    rm("big")
    fd = ulib.open("big", ulib.O_CREATE | ulib.O_RDWR)
    for i in range(n):
        check(ulib.write(fd, i.to_bytes(4, "little") * (bs // 4)) == bs, "write block %d", i)
    ulib.close(fd)
    fd = ulib.open("big", ulib.O_RDONLY)
    for i in range(n):
        b = ulib.read(fd, bs)
        check(len(b) == bs and b[:4] == i.to_bytes(4, "little") and b[-4:] == b[:4],
              "block %d reads back wrong", i)
    check(ulib.read(fd, bs) == b"", "data past the end")
    ulib.close(fd)
    ulib.unlink("big")


def createtest():
    names = ["a%c" % (ord("0") + i) for i in range(52)]
    for nm in names:
        create(nm)
    for nm in names:
        ulib.unlink(nm)
    for nm in names:
        fails(ulib.stat, nm, want=errno.ENOENT)


def dirtest():
    here = ulib.getcwd()
    ulib.mkdir("dir0")
    ulib.chdir("dir0")
    check(ulib.getcwd().rstrip("/").endswith("/dir0"), "getcwd in dir0: %s", ulib.getcwd())
    ulib.chdir("..")
    check(ulib.getcwd() == here, "getcwd back: %s", ulib.getcwd())
    fails(ulib.unlink, "dir0")
    ulib.rmdir("dir0")


def exectest():
    rm("echo-ok")
    fd = ulib.open("echo-ok", ulib.O_CREATE | ulib.O_WRONLY | ulib.O_TRUNC)
    pid = ulib.spawn("/bin/echo", ["echo", "OK"], [0, fd, 2])
    ulib.close(fd)
    reap(pid)
    check(slurp("echo-ok") == b"OK\n", "echo's output")
    ulib.unlink("echo-ok")
    fails(ulib.spawn, "/bin/nonexistent", ["nonexistent"], want=errno.ENOENT)
    fails(ulib.spawn, "/bin", ["bin"])


def pipe1():
    n, size = 5, 1033
    r, w = ulib.pipe()
    pid = child("pipewriter", n, size, fds=[0, w, 2])
    ulib.close(w)
    total, seq = 0, 0
    while True:
        data = ulib.read(r, 300)
        if not data:
            break
        for b in data:
            check(b == seq & 0xFF, "byte %d is %d", total, b)
            seq += 1
        total += len(data)
    ulib.close(r)
    check(total == n * size, "read %d bytes of %d", total, n * size)
    reap(pid)
    # the last reader gone, a writer gets EPIPE
    r, w = ulib.pipe()
    ulib.close(r)
    fails(ulib.write, w, b"x", want=errno.EPIPE)
    ulib.close(w)


def killstatus():
    for _ in range(3):
        pid = child("spin")
        ulib.kill(pid)
        reap(pid, KILLED)


def preempt():
    """Two spinning processes do not keep a third from running."""
    spinners = [child("spin"), child("spin")]
    r, w = ulib.pipe()
    third = child("writebyte", fds=[0, w, 2])
    ulib.close(w)
    check(ulib.read(r, 1) == b"x", "the third process did not run")
    ulib.close(r)
    reap(third)
    for pid in spinners:
        ulib.kill(pid)
    for pid in spinners:
        reap(pid, KILLED)


def exitwait():
    for i in range(20):
        reap(child("exit", i), i)
    fails(ulib.wait, want=errno.ECHILD)


def reparent():
    for _ in range(10):
        reap(child("orphaner"))


def twochildren():
    for _ in range(10):
        a, b = child("exit", 0), child("exit", 0)
        got = {ulib.wait()[0], ulib.wait()[0]}
        check(got == {a, b}, "waited for %s, spawned %s", got, {a, b})


def spawnspawn():
    pids = [child("spawner", 5) for _ in range(2)]
    for pid in pids:
        reap(pid)


def sharedfd():
    """Two processes writing one open file share its offset: nothing is overwritten."""
    rm("sharedfd")
    fd = ulib.open("sharedfd", ulib.O_CREATE | ulib.O_RDWR)
    pid = child("sharedfd", "c", fds=[0, 1, 2, fd])
    for _ in range(100):
        ulib.write(fd, b"p" * 10)
    reap(pid)
    ulib.close(fd)
    data = slurp("sharedfd")
    check(data.count(b"c") == 1000 and data.count(b"p") == 1000 and len(data) == 2000,
          "sharedfd holds %d c, %d p, %d bytes", data.count(b"c"), data.count(b"p"), len(data))
    ulib.unlink("sharedfd")


def fourfiles():
    pids = [child("fourfiles", i) for i in range(4)]
    for pid in pids:
        reap(pid)
    for i in range(4):
        data = slurp("f%d" % i)
        check(data == chr(ord("0") + i).encode() * 6000, "f%d: %d bytes, wrong content", i, len(data))
        ulib.unlink("f%d" % i)


def createdelete():
    pids = [child("createdelete", c) for c in "abcd"]
    for pid in pids:
        reap(pid)
    for c in "abcd":
        for i in range(20):
            name = "p%s%d" % (c, i)
            gone = i < 10
            try:
                ulib.stat(name)
                exists = True
            except ulib.Rv6Error:
                exists = False
            check(exists != gone, "%s %s", name, "exists" if exists else "is missing")
            if exists:
                ulib.unlink(name)


def concreate_body(role):
    for i in range(40):
        name = "C%d" % i
        try:
            if (i + role) % 3 == 1:
                ulib.link("C0", name)
            else:
                ulib.close(ulib.open(name, ulib.O_CREATE | ulib.O_RDWR))
        except ulib.Rv6Error:
            pass            # the other process made it first, or C0 is not there yet
    return 0


def concreate():
    pid = child("concreate", 1)
    concreate_body(0)
    reap(pid)
    names = [n for n, _i, _t in ulib.readdir(".") if n.startswith("C") and n[1:].isdigit()]
    check(sorted(names) == sorted("C%d" % i for i in range(40)),
          "concreate made %d names, duplicates: %d", len(set(names)), len(names) - len(set(names)))
    for n in names:
        ulib.unlink(n)
    check(not [n for n, _i, _t in ulib.readdir(".") if n.startswith("C") and n[1:].isdigit()],
          "names left after unlinking")


def linkunlink():
    create("lusrc", b"data")
    pid = child("linkunlink", 1)
    c_linkunlink(2)
    reap(pid)
    rm("lux")
    ulib.unlink("lusrc")


def unlinkread():
    rm("unlinkread")
    create("unlinkread", b"hello")
    fd = ulib.open("unlinkread", ulib.O_RDWR)
    ulib.unlink("unlinkread")
    create("unlinkread", b"yyy")
    check(ulib.read(fd, 1) == b"h", "the unlinked file reads on")
    check(ulib.write(fd, b"xx") == 2, "the unlinked file takes writes")
    ulib.close(fd)
    check(slurp("unlinkread") == b"yyy", "the new file is apart")
    ulib.unlink("unlinkread")


def linktest():
    rm("lf1")
    rm("lf2")
    create("lf1", b"hello")
    ulib.link("lf1", "lf2")
    ulib.unlink("lf1")
    fails(ulib.open, "lf1", ulib.O_RDONLY, want=errno.ENOENT)
    check(slurp("lf2") == b"hello", "lf2 reads the data")
    check(ulib.stat("lf2").nlink == 1, "nlink after unlink")
    fails(ulib.link, "lf2", "lf2", want=errno.EEXIST)
    ulib.unlink("lf2")
    fails(ulib.link, "lf2", "lf1", want=errno.ENOENT)
    fails(ulib.link, ".", "lf1")


def subdir():
    here = ulib.getcwd().rstrip("/")
    rmtree("dd")
    ulib.mkdir("dd")
    create("dd/ff", b"ff")
    fails(ulib.rmdir, "dd", want=errno.ENOTEMPTY)
    ulib.mkdir("dd/dd")
    create("dd/dd/ff", b"FF")
    check(slurp("dd/dd/../ff") == b"ff", "dd/dd/../ff")
    ulib.link("dd/dd/ff", "dd/dd/ffff")
    ulib.unlink("dd/dd/ff")
    fails(ulib.open, "dd/dd/ff", ulib.O_RDONLY, want=errno.ENOENT)
    ulib.chdir("dd")
    ulib.chdir("dd/../../dd")
    ulib.chdir("dd/../../../" + here.lstrip("/") + "/dd" if here else "dd/../../../dd")
    ulib.chdir("./..")
    check(slurp("dd/dd/ffff") == b"FF", "dd/dd/ffff after the chdirs")
    fails(ulib.open, "dd/ff/ff", ulib.O_CREATE | ulib.O_RDWR, want=errno.ENOTDIR)
    fails(ulib.open, "dd/xx/ff", ulib.O_CREATE | ulib.O_RDWR, want=errno.ENOENT)
    fails(ulib.open, "dd", ulib.O_RDWR, want=errno.EISDIR)
    fails(ulib.open, "dd", ulib.O_WRONLY, want=errno.EISDIR)
    fails(ulib.mkdir, "dd/ff/ff", want=errno.ENOTDIR)
    fails(ulib.mkdir, "dd/xx/ff", want=errno.ENOENT)
    fails(ulib.mkdir, "dd/dd/ffff", want=errno.EEXIST)
    fails(ulib.link, "dd/ff/ff", "dd/dd/xx", want=errno.ENOTDIR)
    fails(ulib.link, "dd/ff", "dd/dd/ffff", want=errno.EEXIST)
    fails(ulib.unlink, "dd/ff/ff", want=errno.ENOTDIR)
    fails(ulib.chdir, "dd/ff", want=errno.ENOTDIR)
    fails(ulib.chdir, "dd/xx", want=errno.ENOENT)
    ulib.unlink("dd/dd/ffff")
    ulib.unlink("dd/ff")
    fails(ulib.rmdir, "dd", want=errno.ENOTEMPTY)
    ulib.rmdir("dd/dd")
    ulib.rmdir("dd")


def bigwrite():
    rm("bigwrite")
    for sz in range(499, 3 * 4096, 471):
        fd = ulib.open("bigwrite", ulib.O_CREATE | ulib.O_RDWR | ulib.O_TRUNC)
        for _ in range(2):
            check(ulib.write(fd, b"w" * sz) == sz, "write of %d", sz)
        ulib.close(fd)
        check(ulib.stat("bigwrite").size == 2 * sz, "size after writes of %d", sz)
    ulib.unlink("bigwrite")


def bigfile():
    rm("bigfile.dat")
    fd = ulib.open("bigfile.dat", ulib.O_CREATE | ulib.O_RDWR)
    for i in range(20):
        check(ulib.write(fd, bytes([i]) * 600) == 600, "write chunk %d", i)
    ulib.close(fd)
    fd = ulib.open("bigfile.dat", ulib.O_RDONLY)
    total = 0
    for i in range(40):
        b = ulib.read(fd, 300)
        check(b == bytes([i // 2]) * 300, "read chunk %d", i)
        total += len(b)
    check(ulib.read(fd, 300) == b"" and total == 12000, "total %d", total)
    ulib.close(fd)
    ulib.unlink("bigfile.dat")


def fourteen():
    """xv6 checks its 14-byte names; Rv6's are up to 60 bytes: the longest work at every
    level of a path, one more is ENAMETOOLONG."""
    longest = "1234567890" * 6
    rmtree(longest)
    ulib.mkdir(longest)
    ulib.mkdir(longest + "/" + longest)
    create(longest + "/" + longest + "/" + longest, b"60")
    check(slurp(longest + "/" + longest + "/" + longest) == b"60", "60-byte names")
    fails(ulib.open, longest + "/" + longest + "x", ulib.O_CREATE | ulib.O_RDWR, want=errno.ENAMETOOLONG)
    fails(ulib.mkdir, longest + "x", want=errno.ENAMETOOLONG)
    rmtree(longest)


def rmdot():
    here = ulib.getcwd()
    ulib.mkdir("dots")
    ulib.chdir("dots")
    fails(ulib.rmdir, ".")
    fails(ulib.rmdir, "..")
    fails(ulib.rmdir, "/")
    ulib.chdir(here)
    fails(ulib.rmdir, "dots/.")
    fails(ulib.rmdir, "dots/..")
    ulib.rmdir("dots")


def dirfile():
    create("dirfile")
    fails(ulib.chdir, "dirfile", want=errno.ENOTDIR)
    fails(ulib.open, "dirfile/xx", ulib.O_RDONLY, want=errno.ENOTDIR)
    fails(ulib.open, "dirfile/xx", ulib.O_CREATE | ulib.O_RDWR, want=errno.ENOTDIR)
    fails(ulib.mkdir, "dirfile/xx", want=errno.ENOTDIR)
    fails(ulib.unlink, "dirfile/xx", want=errno.ENOTDIR)
    fails(ulib.link, "/bin/echo", "dirfile/xx", want=errno.ENOTDIR)
    ulib.unlink("dirfile")
    fails(ulib.open, ".", ulib.O_RDWR, want=errno.EISDIR)
    fails(ulib.open, ".", ulib.O_WRONLY, want=errno.EISDIR)
    ulib.close(ulib.open(".", ulib.O_RDONLY))


def iref():
    """Many nested directories and failed calls in them leak no inode references."""
    here = ulib.getcwd()
    for _ in range(20):
        ulib.mkdir("irefd")
        ulib.chdir("irefd")
        fails(ulib.mkdir, "")
        fails(ulib.link, "/bin/echo", "")
        fails(ulib.open, "", ulib.O_CREATE | ulib.O_RDWR)
        create("xx")
        ulib.link("xx", "yy")
        ulib.unlink("xx")
        ulib.unlink("yy")
    ulib.chdir(here)
    rmtree("irefd")


def bigdir():
    n = 200
    rm("bd")
    create("bd")
    for i in range(n):
        ulib.link("bd", "x%03d" % i)
    check(ulib.stat("bd").nlink == n + 1, "nlink %d", ulib.stat("bd").nlink)
    for i in range(n):
        ulib.unlink("x%03d" % i)
    ulib.unlink("bd")


def manywrites():
    pids = [child("manywrites", i) for i in range(4)]
    for pid in pids:
        reap(pid)


def diskfull():
    """Fill the disk: writes end with ENOSPC (or a short write), the fs stays usable, and
    once the files are removed the space is back."""
    chunk = b"d" * 65536
    made, full = [], False
    for i in range(10000):
        name = "diskfull%d" % i
        try:
            fd = ulib.open(name, ulib.O_CREATE | ulib.O_RDWR | ulib.O_TRUNC)
        except ulib.Rv6Error as e:
            check(e.errno == errno.ENOSPC, "create on a full disk: %s", e.strerror)
            full = True
            break
        made.append(name)
        try:
            for _ in range(16):
                if ulib.write(fd, chunk) < len(chunk):
                    full = True
                    break
        except ulib.Rv6Error as e:
            check(e.errno == errno.ENOSPC, "write on a full disk: %s", e.strerror)
            full = True
        finally:
            ulib.close(fd)
        if full:
            break
    check(full, "the disk never filled")
    # a directory block cannot be had either, yet reading works
    try:
        for j in range(64):
            ulib.mkdir("diskfulldir%d" % j)
            made.append("diskfulldir%d" % j)
    except ulib.Rv6Error as e:
        check(e.errno == errno.ENOSPC, "mkdir on a full disk: %s", e.strerror)
    check(len(slurp("/bin/echo")) > 0, "reading on a full disk")
    for name in made:
        rmtree(name)
    create("diskfull-after", chunk)
    check(slurp("diskfull-after") == chunk, "write after freeing")
    ulib.unlink("diskfull-after")


def outofinodes():
    made = []
    try:
        for i in range(200000):
            name = "zz%d" % i
            ulib.close(ulib.open(name, ulib.O_CREATE | ulib.O_RDWR))
            made.append(name)
    except ulib.Rv6Error as e:
        check(e.errno == errno.ENOSPC, "create with no inode left: %s", e.strerror)
    check(made, "no file could be made")
    for name in made:
        ulib.unlink(name)
    create("zz-after", b"x")
    ulib.unlink("zz-after")


CASES = [
    copyin, copyout, truncate1, truncate2, truncate3, openiput, exitiput, iput, opentest,
    writetest, writebig, createtest, dirtest, exectest, pipe1, killstatus, preempt, exitwait,
    reparent, twochildren, spawnspawn, sharedfd, fourfiles, createdelete, unlinkread,
    linktest, concreate, linkunlink, subdir, bigwrite, bigfile, fourteen, rmdot, dirfile,
    iref, bigdir, manywrites, diskfull, outofinodes,
]
BY_NAME = {f.__name__: f for f in CASES}


def run_case(name):
    try:
        BY_NAME[name]()
    except Fail as e:
        ulib.fprintf(2, "%s: %s\n", name, e)
        return 1
    except ulib.Rv6Error as e:
        ulib.fprintf(2, "%s: unexpected error: %s (errno %s)\n", name, e.strerror,
                     errno.errorcode.get(e.errno, e.errno))
        return 1
    return 0


def main(argv):
    args = argv[1:]
    if args[:1] == ["-child"] and len(args) >= 2:
        return CHILDREN[args[1]](*args[2:])
    if args[:1] == ["-case"] and len(args) == 2:
        return run_case(args[1])
    if args[:1] == ["-l"]:
        ulib.printf("%s\n", "\n".join(BY_NAME))
        return 0
    unknown = [a for a in args if a not in BY_NAME]
    if unknown:
        ulib.fprintf(2, "usertests: no case %s (usertests -l lists them)\n", ", ".join(unknown))
        return 2
    names = args or list(BY_NAME)
    ulib.printf("usertests starting\n")
    failed = []
    for name in names:
        try:
            pid = ulib.spawn(ME, ["usertests", "-case", name])
            _, status = ulib.wait(pid)
        except ulib.Rv6Error as e:
            ulib.fprintf(2, "cannot run: %s\n", e.strerror)
            status = -1
        # one line a case, after it ran: what the case printed on failure comes first
        if status == 0:
            ulib.printf("test %s: OK\n", name)
        else:
            ulib.printf("test %s: FAILED (status %d)\n", name, status)
            failed.append(name)
    if failed:
        ulib.printf("SOME TESTS FAILED: %s\n", " ".join(failed))
        return 1
    ulib.printf("ALL TESTS PASSED\n")
    return 0
