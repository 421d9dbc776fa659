"""The runtime directory is ours or refused, and stale-instance cleanup kills only our own
processes (issue: another local user could make root kill a process of their choice)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psutil
import pytest

from redleaf.domains.paths import InstancePaths, RuntimeDirUnsafe
from redleaf.supervisor import stale

NOBODY = 65534


def _cli(tmp_path, *args):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("REDLEAF_RUNTIME_DIR", None)
    return subprocess.run([sys.executable, "-m", "redleaf.supervisor.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("REDLEAF_RUNTIME_DIR", raising=False)
    return tmp_path


@pytest.mark.parametrize("how", ["other-owner", "group-writable", "symlink"])
def test_a_squatted_runtime_dir_is_refused(private_tmp, how):
    root = private_tmp / f"redleaf-{os.getuid()}"
    if how == "symlink":
        target = private_tmp / "elsewhere"
        target.mkdir(mode=0o700)
        root.symlink_to(target)
    else:
        root.mkdir()
        os.chmod(root, 0o777 if how == "group-writable" else 0o700)
        if how == "other-owner":
            if os.getuid() != 0:
                pytest.skip("making a directory of another user needs root")
            os.chown(root, NOBODY, NOBODY)   # as a second local user would have made it
    for args in (["--name", "sq", "up", "--detach"], ["--name", "sq", "status"], ["--name", "sq", "down"]):
        r = _cli(private_tmp, *args)
        assert r.returncode != 0, (args, r.stdout, r.stderr)
        assert "refusing the runtime directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with pytest.raises(RuntimeDirUnsafe):
        stale.clean_stale("sq")
    # nothing was created in, or through, the squatted directory
    assert not (root / "sq").exists() and not (private_tmp / "elsewhere" / "sq").exists()
    assert not os.path.exists(InstancePaths("sq").heap)


def test_cleanup_ignores_a_planted_pid_record(private_tmp):
    """A pids file (in a directory that is ours) naming a live process that is not one of
    ours, with its exact start time: cleanup must leave that process alone."""
    victim = subprocess.Popen(["sleep", "300"])
    try:
        name = f"pl{uuid.uuid4().hex[:6]}"
        paths = InstancePaths(name)
        paths.root.parent.mkdir(mode=0o700, exist_ok=True)
        paths.root.mkdir(mode=0o700)
        ctime = psutil.Process(victim.pid).create_time()
        paths.pids.write_text(f"{victim.pid} {ctime}\n")
        paths.supervisor_pid.write_text(f"{victim.pid} {ctime}\n")
        assert stale.supervisor_alive(paths) == 0     # a planted supervisor record is not believed
        assert stale.clean_stale(name) is True          # it cleaned the leftovers ...
        assert victim.poll() is None                    # ... and did not kill the planted pid
        assert not paths.root.exists()
    finally:
        victim.kill()
        victim.wait()


def test_every_file_of_a_running_instance_is_ours_alone(echo_instance, tmp_path):
    """DESIGN §5a: runtime dir 0700, files 0600.  The pid records, the supervisor's log
    and the zmq sockets were 0644/0755 (the umask's), found by the access fuzzer
    (crashtest/fuzz/access.py); the domains keep the user's umask."""
    import stat

    inst = echo_instance
    loose = []
    for dp, _dns, fns in os.walk(inst.paths.root):
        for p in [dp] + [os.path.join(dp, f) for f in fns]:
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            # dirs 0700, files 0600, sockets and doorbell FIFOs no access but ours
            ok = mode == 0o700 if stat.S_ISDIR(st.st_mode) else mode == 0o600 if stat.S_ISREG(st.st_mode) \
                else not mode & 0o077
            if not ok or st.st_uid != os.getuid():
                loose.append(f"{p}: {stat.S_IMODE(st.st_mode):04o} uid {st.st_uid}")
    st = os.lstat(inst.paths.heap)
    if stat.S_IMODE(st.st_mode) != 0o600:
        loose.append(f"{inst.paths.heap}: {stat.S_IMODE(st.st_mode):04o}")
    assert not loose, loose
    pid = inst.status()["echo"]["pid"]
    mask = int(open(f"/proc/{pid}/status").read().split("Umask:")[1].split()[0], 8)
    ours = os.umask(0o022)
    os.umask(ours)
    assert mask == ours            # the domain runs with the user's umask, not the supervisor's
