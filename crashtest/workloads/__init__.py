"""Workloads a campaign runs while it injects faults.

A workload (base.Workload) owns the manifest of the instance it boots, the client
loop it runs in a thread of the campaign's process (attached as a client domain),
its own data checks, and the errors it expects when a given target is hit.

  echo     calls with RRefs on the builtin Echo domain, contents verified
  fleet    the echo rounds on four Echo domains, two apart and two co-located in one
           group (the fast workload behind `--preset soak`)
  nvme-rw  random 4 KiB reads and writes through the NVMe driver's shadow, every
           block versioned: a read returns the last acknowledged write
  fs-ops   file operations through Rv6's fs (rv6fs) on the shadowed NVMe driver:
           create, write, append, pwrite, truncate, rename, unlink, mkdir, rmdir,
           every byte checked against what was acknowledged; fsck of the image at the end
  rv6-usertests  shell scripts and usertests cases run as Rv6 programs through the
           kernel (rv6kernel on rv6fs on the shadowed NVMe driver), output and exit
           status checked
  net-fwd  numbered frames through the ixgbe device's udp wire, the driver behind its
           shadow and an l2fwd domain: none corrupted, duplicated or reordered, losses
           only when the fault hit that path
  MODULE:FUNCTION  a user's loop (see user.py)

May call: domains, drivers, rv6 (its interfaces, errors and fsck), supervisor (manifests only through
drivers), shared_heap.
"""

from __future__ import annotations

BUILTIN = ("echo", "fleet", "nvme-rw", "fs-ops", "rv6-usertests", "net-fwd")


def get(name: str, tmpdir: str):
    """The workload called `name` (built-in, or `module:function`)."""
    if name == "echo":
        from .echo import EchoWorkload

        return EchoWorkload(tmpdir)
    if name == "fleet":
        from .fleet import FleetWorkload

        return FleetWorkload(tmpdir)
    if name == "nvme-rw":
        from .nvme_rw import NvmeRwWorkload

        return NvmeRwWorkload(tmpdir)
    if name == "fs-ops":
        from .fs_ops import FsOpsWorkload

        return FsOpsWorkload(tmpdir)
    if name == "rv6-usertests":
        from .rv6_usertests import Rv6UsertestsWorkload

        return Rv6UsertestsWorkload(tmpdir)
    if name == "net-fwd":
        from .net_fwd import NetFwdWorkload

        return NetFwdWorkload(tmpdir)
    if ":" in name:
        from .user import UserWorkload

        return UserWorkload(name, tmpdir)
    raise ValueError(f"unknown workload {name!r}; built-in: {', '.join(BUILTIN)}, or MODULE:FUNCTION")
