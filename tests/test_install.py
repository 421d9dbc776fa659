"""The wheel installs under one namespace, redleaf.<part>, and so sits beside supervisord's
own top-level `supervisor` package (the reason for the namespace): both import, each its own."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_beside_supervisord(tmp_path):
    # build from a copy: setuptools writes build/ and *.egg-info into the tree it builds
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                              ".hypothesis", ".pytest_cache", "*.img"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("redleaf-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel), "supervisor"],
                   check=True, capture_output=True, timeout=300)
    # Our dependencies (numpy, zmq, ...) come from the test venv; its editable-install hook
    # is not activated by a plain path entry, so `redleaf` can only come from the wheel.
    scratch_site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    (Path(scratch_site) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = (
        "import supervisor, supervisor.supervisord, redleaf.supervisor.manifest as m, redleaf.bench, "
        "redleaf.drivers.nvme.controller, redleaf.domains, redleaf.shared_heap\n"
        "print(supervisor.__file__); print(m.__file__)\n"
        "from importlib.metadata import entry_points\n"
        "print(sorted(e.name for e in entry_points(group='redleaf.bench')))\n"
        "print(m.load_manifest(None).domains[0].target)\n"
    )
    out = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split("\n")
    assert out[0].startswith(scratch_site) and out[0].endswith("supervisor/__init__.py")   # supervisord's
    assert out[1].startswith(scratch_site) and out[1].endswith("redleaf/supervisor/manifest.py")  # ours
    assert "calls" in out[2] and "nvme" in out[2]
    assert out[3].startswith("redleaf.")   # the packaged default manifest is in the wheel
    assert (env_dir / "bin" / "redleaf").exists()
