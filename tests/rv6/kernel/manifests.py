"""The manifest of an instance with Rv6's kernel: NVMe (no shadow, fewer processes),
rv6fs on it, rv6kernel on rv6fs, for the kernel's integration tests."""

from __future__ import annotations

from redleaf.drivers.nvme.manifests import nvme_manifest

KERNEL_DOMAIN = """
[[domain]]
name = "rv6fs"
target = "redleaf.rv6.fs_domain:FsDomain"
restart = "permanent"
max_restarts = 20
period_s = 10.0
backoff_s = 0.01
uses = ["nvme0"]
config = { bdev = "nvme0", mkfs_if_blank = true }

[[domain]]
name = "rv6kernel"
target = "redleaf.rv6.kernel_domain:KernelDomain"
restart = "permanent"
max_restarts = 20
period_s = 10.0
backoff_s = 0.01
uses = ["rv6fs"]
may_spawn = true
spawn_target = "redleaf.rv6.user_host:UserProgram"
config = { fs = "rv6fs" }
"""


def kernel_manifest(image: str, watchdog_s: float = 10.0) -> str:
    return nvme_manifest(image, "16MiB", shadow=False, heap="64MiB", watchdog_s=watchdog_s) + KERNEL_DOMAIN
