"""`redleaf`: the one command that drives an instance.

Conventional and scriptable: `--json` wherever a table is printed, exit status 0 on
success, non-zero with a one-line reason on stderr otherwise.  Every command takes
`--name` (default: `default`) to pick the instance.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from redleaf.domains.errors import ControlError, RedleafError
from redleaf.domains.paths import InstancePaths, check_instance_name


class CliError(Exception):
    pass


def _client(args, timeout_s: float = 10.0):
    from redleaf.domains.control import ControlClient

    return ControlClient(args.name, timeout_s=timeout_s)


def _request(args, cmd: str, timeout_s: float = 30.0, **fields) -> dict:
    c = _client(args, timeout_s)
    try:
        return c.request(cmd, **fields)
    finally:
        c.close()


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    cells = [[h for _k, h in cols]] + [[_fmt(r.get(k)) for k, _h in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(cols))).rstrip() for c in cells)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "-"
    return str(v)


def _bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


# ----------------------------------------------------------------------- commands
def cmd_up(args) -> int:
    from .manifest import load_manifest
    from . import daemon, stale

    # domains import their targets from here too (the zygote inherits sys.path), so a
    # manifest can name modules that sit beside it, as `redleaf load` can
    for d in {os.getcwd(), os.path.dirname(os.path.abspath(args.manifest)) if args.manifest else None} - {None}:
        if d not in sys.path:
            sys.path.append(d)
    manifest = load_manifest(args.manifest)
    # A device's backing file named by a relative path lives in the directory `redleaf
    # up` runs in (the default manifest's nvme0.img too); made absolute here, so status
    # shows where it is and a later cwd changes nothing.
    for spec in manifest.devices:
        img = spec.config.get("image")
        if isinstance(img, str) and img and not os.path.isabs(img):
            spec.config["image"] = os.path.abspath(img)
    _preflight([s for s in manifest.devices + manifest.domains if not s.shadow], args.keep_going)
    try:
        pid = stale.supervisor_alive(InstancePaths(args.name))
    except Exception:
        pid = 0
    if pid:
        raise CliError(f"instance {args.name!r} is already running (supervisor pid {pid}); "
                       f"stop it with `redleaf down --name {args.name}`")
    if not args.detach:
        print(f"redleaf: starting instance {args.name!r} (Ctrl-C or `redleaf down` to stop)", file=sys.stderr)
        try:
            return daemon.run(args.name, manifest, foreground=True)
        except stale.InstanceRunning as e:
            raise CliError(str(e)) from None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        code = 0
        try:
            daemon.run(args.name, manifest, foreground=False, ready_fd=w)
        except BaseException as e:
            try:
                os.write(w, b"E" + f"{type(e).__name__}: {e}".encode()[:500])
            except OSError:
                pass
            code = 1
        os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
        if data == b"1":
            break
    os.close(r)
    if data != b"1":
        raise CliError(data[1:].decode() if data.startswith(b"E") else "the supervisor exited during start-up; "
                       f"see {InstancePaths(args.name).log('supervisor')}")
    problems, st = _await_boot(args, {s.name for s in manifest.devices + manifest.domains})
    if problems and not args.keep_going:
        for p in problems:
            print(f"redleaf: {p}", file=sys.stderr)
        raise CliError(f"instance {args.name!r} is up (supervisor pid {st['pid']}) but {len(problems)} "
                       f"domain(s) did not come up; fix the manifest and `redleaf restart` them, or "
                       f"`redleaf down --name {args.name}` (--keep-going accepts this)")
    for p in problems:
        print(f"redleaf: warning: {p}", file=sys.stderr)
    print(f"redleaf: instance {args.name!r} up (supervisor pid {st['pid']})")
    return 0


BOOT_DEADLINE_S = 60.0


def _await_boot(args, names: set[str]) -> tuple[list[str], dict]:
    """Wait until every domain of the manifest serves, one fails, or the deadline passes;
    the problems, each naming the domain and why (its last reason)."""
    deadline = time.monotonic() + BOOT_DEADLINE_S
    while True:
        st = _request(args, "status")
        rows = {d["name"]: d for d in st["domains"] if d["name"] in names}
        bad = [d for d in rows.values() if d["state"] == "failed"
               or (d["state"] in ("crashed", "backoff") and d["restarts"] >= 1)]
        pending = [d for d in rows.values() if d["state"] != "running"]
        if not pending or bad or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    paths = InstancePaths(args.name)
    problems = []
    for d in bad or pending:
        err = _last_error(paths.log(d["name"]))
        problems.append(f"{d['name']} did not come up ({d['state']}): {d.get('reason') or 'no reason given'}"
                        + (f"; its log ends with {err}" if err else ""))
    return problems, st


_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Fault|Interrupt|Crashed)\b.*)$")


def _last_error(path) -> str | None:
    """The last exception line of a domain's log ("ValueError: ..."), for a one-line why."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = _STAMP.sub("", line.strip())   # domain logs are timestamped line by line
        m = _EXC_LINE.match(line)
        if m:
            return m.group(1)
    return None


def _preflight_problems(items: list[dict]) -> dict:
    from .preflight import check_targets

    return check_targets(items)


def _preflight(specs, keep_going: bool) -> None:
    items = [{"name": s.name, "target": s.target, "kind": s.kind, "path": s.path} for s in specs]
    # what a may_spawn domain's children run is checked too (its first spawn would fail)
    items += [{"name": f"{s.name} (spawn_target)", "target": s.spawn_target, "kind": "domain", "path": s.path}
              for s in specs if getattr(s, "may_spawn", False)]
    problems = _preflight_problems(items)
    if not problems:
        return
    for name, why in problems.items():
        print(f"redleaf: {'warning: ' if keep_going else ''}{name}: {why}", file=sys.stderr)
    if not keep_going:
        raise CliError(f"{len(problems)} target(s) of the manifest cannot load; nothing was started "
                       f"(--keep-going starts the rest)")


def cmd_down(args) -> int:
    from . import stale

    paths = InstancePaths(args.name)
    pid = stale.supervisor_alive(paths)
    if not pid:
        if stale.clean_stale(args.name):
            print(f"redleaf: instance {args.name!r} was not running; removed its leftovers")
            return 0
        raise CliError(f"no instance {args.name!r} is running")
    try:
        _request(args, "shutdown", timeout_s=5.0)
    except ControlError:
        os.kill(pid, 15)
    if not stale.wait_gone(pid, args.timeout):
        os.kill(pid, 9)
        stale.wait_gone(pid, 2.0)
    stale.clean_stale(args.name)
    print(f"redleaf: instance {args.name!r} down")
    return 0


def cmd_status(args) -> int:
    st = _request(args, "status")
    if args.json:
        print(json.dumps(st["domains"]))
        return 0
    rows = []
    for d in st["domains"]:
        d = dict(d)
        d["rss"] = _bytes(d["rss"]) if d["rss"] else None
        d["heap"] = _bytes(d["heap_bytes"])
        d["uptime"] = f"{d['uptime_s']:.1f}s" if d["state"] == "running" else None
        d["exports"] = [f"{x['name']}:{x['interface']}" for x in d.get("exports") or []]
        rows.append(d)
    cols = [("name", "NAME"), ("kind", "KIND"), ("id", "ID"), ("pid", "PID"), ("state", "STATE"),
            ("restarts", "RESTARTS"), ("uptime", "UPTIME"), ("cpu_s", "CPU(s)"), ("rss", "RSS"),
            ("heap", "HEAP"), ("heap_objects", "OBJS"), ("calls_served", "CALLS"),
            ("exports", "EXPORTS"), ("reason", "LAST EVENT")]
    if any(r.get("group") for r in rows):   # co-located domains: which share a process
        cols.insert(4, ("group", "GROUP"))
    print(_table(rows, cols))
    return 0


def _parse_sets(sets: list[str]) -> dict:
    import tomllib

    cfg = {}
    for s in sets or []:
        key, eq, val = s.partition("=")
        if not eq or not key:
            raise CliError(f"--set takes KEY=VALUE, got {s!r}")
        try:
            cfg[key] = tomllib.loads(f"v = {val}")["v"]
        except tomllib.TOMLDecodeError as e:
            # a bare word is a string (--set image=disk.img); what looks like a TOML value
            # (a list, table, quoted string, number) must parse, or it would be silently
            # taken as the wrong type
            if val[:1] in "[{\"'+-.0123456789" or val in ("true", "false"):
                raise CliError(f"--set {key}: {val!r} looks like a TOML value but does not parse: {e}") from None
            cfg[key] = val
    return cfg


def cmd_load(args) -> int:
    config = _parse_sets(args.set)
    if args.uses:
        running = {d["name"] for d in _request(args, "status")["domains"]}
        unknown = [u for u in args.uses if u not in running]
        if unknown:
            raise CliError(f"--uses names no domain of {args.name!r}: {', '.join(unknown)}; "
                           f"it has: {', '.join(sorted(running)) or 'none'}")
    problems = _preflight_problems([{"name": args.domain, "target": args.target, "kind": "domain",
                                     "path": os.getcwd()}])
    if problems:
        raise CliError(f"{args.domain}: {problems[args.domain]}")
    r = _request(args, "load", timeout_s=60.0, name=args.domain, target=args.target, restart=args.restart,
                 config=config, uses=args.uses or [], shadow=args.shadow, path=os.getcwd())
    print(f"redleaf: {args.domain} running (id {r['id']}, pid {r['pid']})")
    return 0


def cmd_unload(args) -> int:
    _request(args, "unload", timeout_s=30.0, name=args.domain)
    print(f"redleaf: {args.domain} unloaded")
    return 0


def cmd_restart(args) -> int:
    r = _request(args, "restart", timeout_s=60.0, name=args.domain)
    print(f"redleaf: {args.domain} restarted (pid {r.get('pid')})")
    return 0


def cmd_kill(args) -> int:
    r = _request(args, "kill", name=args.domain, how=args.how)
    hits = r.get("hits") or [args.domain]
    if r.get("group") and len(hits) > 1:  # a signal hits the process the group shares
        print(f"redleaf: injected {args.how} into {args.domain} (pid {r['pid']}): the whole group "
              f"{r['group']} shares that process, so it hits {', '.join(hits)}")
    elif r.get("group"):
        print(f"redleaf: injected {args.how} into {args.domain} (pid {r['pid']}, group {r['group']}): "
              f"this domain only")
    else:
        print(f"redleaf: injected {args.how} into {args.domain} (pid {r['pid']})")
    return 0


def cmd_inject(args) -> int:
    r = _request(args, "inject", name=args.domain, method=args.method, nth=args.nth, action=args.action,
                 stall_s=float(args.stall_s))
    what = f"a {args.stall_s:g}s stall" if args.action == "slow" else args.action
    print(f"redleaf: armed {what} in call {args.nth} of {args.domain}.{args.method}() (pid {r['pid']})")
    return 0


def cmd_logs(args) -> int:
    paths = InstancePaths(args.name)
    path = paths.log(args.domain)
    if not paths.root.exists():
        raise CliError(f"no instance {args.name!r} is running")
    if not path.exists():
        raise CliError(f"no log for {args.domain!r} in instance {args.name!r} (see `redleaf status`)")
    with open(path, "rb") as f:
        sys.stdout.buffer.write(f.read())
        sys.stdout.flush()
        while args.follow:
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif not paths.root.exists():
                return 0
            else:
                time.sleep(0.2)
    return 0


def _owner_names(args) -> dict[str, str]:
    """Heap owner ids as people know them: `echo#3`, `client:4242#7`, `supervisor#1`; ids
    are reused after a restart, so the name says whose objects these are now."""
    names = {"1": "supervisor#1"}
    for d in _request(args, "status")["domains"]:
        if d.get("id"):
            label = f"client:{d['pid']}" if d.get("kind") == "client" else d["name"]
            names[str(d["id"])] = f"{label}#{d['id']}"
    return names


_VEC_RE = re.compile(r"^vec\[(.+)\]$")


def _type_label(name: str) -> str:
    """`vec[|u1]` (numpy's type string, as registered) as `vec[uint8]`."""
    m = _VEC_RE.match(name)
    if not m:
        return name
    import numpy as np

    try:
        dt = np.dtype(m.group(1))
    except TypeError:
        return name
    return f"vec[{dt.name}{', big-endian' if dt.byteorder == '>' else ''}]"


def cmd_heap(args) -> int:
    r = _request(args, "heap", check=bool(args.check))
    stats = r["stats"]
    violations = r.get("violations", [])
    owners = _owner_names(args)
    for did, row in stats.get("domains", {}).items():
        row["owner"] = owners.get(did, f"gone#{did}")
    stats["types"] = {_type_label(k): v for k, v in stats.get("types", {}).items()}
    if args.json:
        out = dict(stats)
        if args.check:
            out["violations"] = violations
            for k in ("channels", "leftovers"):  # the registry and files a checker compares with status
                if k in r:
                    out[k] = r[k]
        print(json.dumps(out, default=str))
    else:
        print(f"arena {_bytes(stats.get('arena_bytes'))}: live {_bytes(stats.get('live_bytes'))}, "
              f"free {_bytes(stats.get('free_bytes'))}, cached {_bytes(stats.get('cached_free_bytes'))}, "
              f"fragmentation {stats.get('fragmentation', 0):.2f}")
        rows = [dict(v) for v in stats.get("domains", {}).values()]
        if rows:
            print(_table(rows, [("owner", "OWNER"), ("objects", "OBJECTS"), ("bytes", "BYTES"),
                                ("leased_bytes", "LEASED")]))
        trows = [dict(type=k, **v) for k, v in stats.get("types", {}).items()]
        if trows:
            print(_table(trows, [("type", "TYPE"), ("objects", "OBJECTS"), ("bytes", "BYTES")]))
        if args.check:
            ch = r.get("channels")
            if ch is not None:
                print(f"channels: {len(ch['channels'])} (supervisor holds {ch['memfd_fds']} segment fd(s), "
                      f"maps {ch['memfd_maps']} segment(s)); doorbells: {len(r.get('leftovers', {}).get('bells', []))}")
            print("check: OK" if not violations else f"check: {len(violations)} violation(s)")
    if args.check and violations:
        print(f"redleaf: heap check failed: {violations[0]}", file=sys.stderr)
        return 1
    return 0


def cmd_check(args) -> int:
    from redleaf.domains.interface import check_module

    sys.path.insert(0, os.getcwd())
    lines, errors = check_module(args.module)
    for line in lines:
        print(line)
    for e in errors:
        for line in e.splitlines():
            print(f"error: {line}", file=sys.stderr)
    if errors:
        print(f"redleaf: {args.module}: {sum(len(e.splitlines()) for e in errors)} error(s)", file=sys.stderr)
        return 1
    return 0


def cmd_attach(args) -> int:
    import code

    from redleaf.domains import attach

    with attach(args.name) as d:
        exports = [(x["name"], f"{x['module']}.{x['interface']}") for row in d.request("status")["domains"]
                   for x in row.get("exports") or []]
        listing = "\n".join(f"  {n:<16} {i}" for n, i in exports) or "  (nothing yet)"
        banner = (f"redleaf: attached to {args.name!r} as domain {d.domain_id}.\n"
                  f"`d` is the client. What the instance exports (d.exports() lists it again):\n{listing}\n"
                  f"p = d.lookup(\"echo\") gives a proxy for the interface the domain registered "
                  f"(d.lookup(name, Interface) checks your own class against it); also d.heap, "
                  f"d.request('status')")
        code.interact(banner=banner, local={"d": d})
    return 0


def _benchmarks() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="redleaf.bench")}


def format_rows(rows: list[dict]) -> str:
    """Benchmark rows (DESIGN §8) as an aligned table, values right-aligned."""
    cols = ["bench", "case", "system", "metric", "value", "unit"]
    if any("note" in r for r in rows):   # a published-* figure says where it comes from
        cols.append("note")
    cells = [cols] + [[f"{r[c]:.4g}" if c == "value" else str(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c[i].rjust(w[i]) if i == 4 else c[i].ljust(w[i]) for i in range(len(cols))).rstrip()
                     for c in cells)


def cmd_bench(args) -> int:
    benches = _benchmarks()
    ep = benches.get(args.bench)
    if ep is None:
        raise CliError(f"unknown benchmark {args.bench!r}; available: {', '.join(sorted(benches)) or 'none'} "
                       f"(benchmarks are the 'redleaf.bench' entry points of the installed packages)")
    rest = list(args.rest)
    as_json = args.json or "--json" in rest
    rest = [a for a in rest if a != "--json"]
    try:
        fn = ep.load()
    except ImportError as e:
        raise CliError(f"benchmark {args.bench!r} is not available: {e}") from None
    rows = fn(rest)
    print(json.dumps(rows) if as_json else format_rows(rows))
    return 0


def _tools() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="redleaf.tools")}


def cmd_crashtest(args) -> int:
    """Fault campaigns and fuzzers (issue #18): redleaf.crashtest, found through the
    'redleaf.tools' entry point as `bench` finds benchmarks (the CLI never imports it,
    DESIGN §2).  Its own options are parsed by it; the global --name is passed on."""
    ep = _tools().get("crashtest")
    if ep is None:
        raise CliError("crashtest is not installed (no 'redleaf.tools' entry point named crashtest; "
                       "reinstall the package: make install)")
    try:
        fn = ep.load()
    except ImportError as e:
        raise CliError(f"crashtest is not available: {e}") from None
    rest = list(args.rest)
    # a campaign boots its workload's own instance unless told which one to join:
    # `redleaf --name N crashtest ...` joins N, as `crashtest --name N` does
    if args.name != os.environ.get("REDLEAF_INSTANCE", "default") and "--name" not in rest:
        rest = ["--name", args.name] + rest
    return fn(rest)


def _run_offline_tool(module: str, argv: list[str]) -> int:
    """Run one of Rv6's offline tools as `python -m MODULE ARGV...` and hand back its exit
    status: the supervisor's layer never imports rv6 (tests/test_layers.py), the tool
    is a separate program on an image file, with no instance involved."""
    import subprocess

    return subprocess.run([sys.executable, "-m", module, *argv]).returncode


def cmd_mkfs(args) -> int:
    argv = [args.image]
    if args.size is not None:
        argv += ["--size", args.size]
    if args.inodes is not None:
        argv += ["--inodes", str(args.inodes)]
    if args.no_programs:
        argv.append("--no-programs")
    if args.json:
        argv.append("--json")
    return _run_offline_tool("redleaf.rv6.fs.mkfs", argv)


def cmd_fsck(args) -> int:
    return _run_offline_tool("redleaf.rv6.fs.fsck", [args.image] + (["--json"] if args.json else []))
# ----------------------------------------------------------------------- mount
# The mount process's module. The CLI starts it as a program and never imports it (rv6 sits
# above the supervisor, DESIGN §2); tests point this at a mount over a stand-in fs.
MOUNT_MODULE = os.environ.get("REDLEAF_MOUNT_MODULE", "redleaf.rv6.fuse_mount")


def cmd_mount(args) -> int:
    import subprocess
    import tempfile

    mnt = os.path.abspath(args.dir)
    if not os.path.isdir(mnt):
        raise CliError(f"{mnt} is not a directory")
    if os.path.ismount(mnt):
        raise CliError(f"{mnt} is already a mount point")
    # the process's output goes to a file: a detached mount outlives this command, so a pipe
    # would break under it; on failure its last line is the reason
    fd, logpath = tempfile.mkstemp(prefix="redleaf-mount-", suffix=".log")
    argv = [sys.executable, "-m", MOUNT_MODULE, mnt, "--name", args.name, "--export", args.export]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                            start_new_session=not args.foreground)
    os.close(fd)
    # ready is observable: the directory becomes a mount point, or the process ends
    deadline = time.monotonic() + args.timeout
    while not os.path.ismount(mnt):
        if proc.poll() is not None:
            with open(logpath, errors="replace") as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
            raise CliError(f"mount of {mnt} failed (exit {proc.returncode}): "
                           f"{lines[-1] if lines else 'no output'} (log: {logpath})")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise CliError(f"{mnt} was not mounted within {args.timeout:g}s; killed the mount process (log: {logpath})")
        time.sleep(0.05)
    print(f"mounted {args.name}:{args.export} on {mnt} (pid {proc.pid}, log {logpath})", flush=True)
    if not args.foreground:
        return 0
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _umount(mnt)
        proc.wait()
        return 130


def _umount(mnt: str) -> str:
    """Unmount; a mount whose process was killed can be busy or half-gone for a plain
    unmount, so fall back to a lazy one, which always detaches it."""
    import subprocess

    r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
    if r.returncode == 0:
        return "unmounted"
    if not os.path.ismount(mnt):
        raise CliError(f"{mnt} is not mounted: {r.stderr.strip()}")
    r2 = subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True, text=True)
    if r2.returncode != 0:
        raise CliError(f"cannot unmount {mnt}: {(r2.stderr or r.stderr).strip()}")
    return "unmounted (lazily: the mount process was gone or the mount busy)"


def cmd_umount(args) -> int:
    import shutil

    if shutil.which("fusermount3") is None:
        raise CliError("fusermount3 is not installed (make sysdeps installs fuse3)")
    mnt = os.path.abspath(args.dir)
    print(f"{mnt}: {_umount(mnt)}")
    return 0


SH_MODULE = "redleaf.rv6.terminal"


def cmd_sh(args) -> int:
    """Rv6's shell: this process becomes the terminal client (rv6/terminal.py), so the
    terminal, the signals and the exit status are the user's own. Exec'd rather than
    imported: the supervisor's code never imports Rv6 (DESIGN §2)."""
    argv = [sys.executable, "-m", SH_MODULE, "--name", args.name, "--program", args.program]
    if args.command is not None:
        argv += ["-c", args.command]
    sys.stdout.flush()
    os.execv(sys.executable, argv + ["--"] + args.args)


# ----------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="redleaf", description="RedLeaf-style isolated domains as processes.")
    p.add_argument("--name", default=os.environ.get("REDLEAF_INSTANCE", "default"), help="instance name")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help):
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(fn=fn)
        sp.add_argument("--name", default=argparse.SUPPRESS, help="instance name")
        return sp

    sp = add("up", cmd_up, "start an instance (supervisor + manifest)")
    sp.add_argument("--manifest", help="TOML manifest (default: the packaged one)")
    sp.add_argument("--detach", action="store_true",
                    help="run in the background; returns once every domain serves, non-zero naming those that did not")
    sp.add_argument("--keep-going", action="store_true",
                    help="boot even if some targets cannot load or some domains do not come up (warns)")
    sp = add("down", cmd_down, "stop an instance; nothing left behind")
    sp.add_argument("--timeout", type=float, default=15.0)
    sp = add("status", cmd_status, "domains: state, pid, restarts, cpu, rss, heap, calls")
    sp.add_argument("--json", action="store_true")
    sp = add("load", cmd_load, "load a domain")
    sp.add_argument("domain", metavar="NAME", help="the name it gets (and exports under)")
    sp.add_argument("target", metavar="TARGET",
                    help="package.module:Class, a domain class (one implementing an @interface); "
                         "modules in the current directory are found too")
    sp.add_argument("--restart", default="permanent", choices=["permanent", "transient", "temporary"],
                    help="after a crash: permanent always restarts, transient only after an abnormal "
                         "exit, temporary never (default: permanent)")
    sp.add_argument("--shadow", action="store_true",
                    help="run a driver as NAME.driver behind the shadow its class names in SHADOW, "
                         "so that its crashes do not reach clients")
    sp.add_argument("--uses", action="append", metavar="NAME",
                    help="a running domain this one calls (repeatable); it gets a proxy to it")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a config value in TOML syntax (repeatable): --set size=4096 --set 'tags=[\"a\"]'; "
                         "a bare word is a string")
    sp = add("unload", cmd_unload, "stop and remove a domain")
    sp.add_argument("domain", metavar="NAME")
    sp = add("restart", cmd_restart, "restart a domain")
    sp.add_argument("domain", metavar="NAME")
    sp = add("kill", cmd_kill, "crash injection")
    sp.add_argument("domain", metavar="NAME")
    sp.add_argument("--how", default="sigkill", choices=["sigkill", "sigsegv", "exception", "exit", "hang"])
    sp = add("inject", cmd_inject, "crash injection inside a call: the Nth call of METHOD faults")
    sp.add_argument("domain", metavar="NAME")
    sp.add_argument("method", metavar="METHOD", help="a method of an interface the domain exports")
    sp.add_argument("--nth", type=int, default=1, help="which call after arming (default 1: the next)")
    sp.add_argument("--action", default="exception", choices=["exception", "exit", "hang", "slow"],
                    help="an undeclared exception (a panic), os._exit, a busy hang, or a stall of --stall-s")
    sp.add_argument("--stall-s", type=float, default=2.0, help="how long `slow` stalls (default 2)")
    sp = add("logs", cmd_logs, "a domain's log")
    sp.add_argument("domain", metavar="NAME")
    sp.add_argument("-f", "--follow", action="store_true")
    sp = add("heap", cmd_heap, "ownership table by domain and type; invariants")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--check", action="store_true")
    sp = add("check", cmd_check, "interface validation (the IDL check)")
    sp.add_argument("module")
    add("attach", cmd_attach, "a Python REPL attached as a client domain")
    sp = add("bench", cmd_bench, "benchmarks with peers in the same run")
    sp.add_argument("bench", metavar="NAME")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp = sub.add_parser("crashtest", help="fault-injection campaigns with invariant checks, and fuzzers "
                        "(`redleaf crashtest --help`)", add_help=False)
    sp.set_defaults(fn=cmd_crashtest)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp = add("mkfs", cmd_mkfs, "make a new Rv6 file system, user programs in /bin, in an image file (offline)")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--size", help="image size with K/M/G suffixes (default 64M)")
    sp.add_argument("--inodes", type=int, help="number of inodes (default: one per 16 KiB)")
    sp.add_argument("--no-programs", action="store_true", help="leave it empty: no /bin, no /dev")
    sp.add_argument("--json", action="store_true")
    sp = add("fsck", cmd_fsck, "check an Rv6 image file (offline, read-only); non-zero listing each problem")
    sp.add_argument("image", metavar="IMAGE")
    sp.add_argument("--json", action="store_true")
    sp = add("mount", cmd_mount, "mount the instance's Rv6 file system on DIR (FUSE)")
    sp.add_argument("dir", metavar="DIR")
    sp.add_argument("--export", default="rv6fs", help="the FileSystem export to mount (default: rv6fs)")
    sp.add_argument("--foreground", action="store_true", help="stay until unmounted (Ctrl-C unmounts)")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the mount")
    sp = add("umount", cmd_umount, "unmount DIR (also one whose mount process was killed)")
    sp.add_argument("dir", metavar="DIR")
    sp = add("sh", cmd_sh, "Rv6's shell on the instance (interactive, or -c CMD: exits with its status)")
    sp.add_argument("-c", dest="command", metavar="CMD", help="run this command line and exit with its status")
    sp.add_argument("--program", default="/bin/sh", help="run this Rv6 program instead of /bin/sh")
    sp.add_argument("args", nargs="*", help="more arguments for the program")
    return p


def _split_tool(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`redleaf [--name N] crashtest ARGS...`: the tool parses its own ARGS (argparse's
    REMAINDER would not take a leading option such as --help)."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--name":
            i += 2
        elif tok.startswith("--name="):
            i += 1
        elif tok == "crashtest":
            return argv[:i + 1], argv[i + 1:]
        else:
            break
    return argv, None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    argv, tool_rest = _split_tool(argv)
    args = build_parser().parse_args(argv)
    if tool_rest is not None:
        args.rest = tool_rest
    try:
        check_instance_name(args.name)
        return args.fn(args) or 0
    except (CliError, RedleafError, ValueError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"redleaf: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
