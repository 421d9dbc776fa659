"""Workloads a campaign runs while it injects faults.

A workload (base.Workload) owns the manifest of the instance it boots, the client
loop it runs in a thread of the campaign's process (attached as a client domain),
its own data checks, and the errors it expects when a given target is hit.

  echo     calls with RRefs on the builtin Echo domain, contents verified
  nvme-rw  random 4 KiB reads and writes through the NVMe driver's shadow, every
           block versioned: a read returns the last acknowledged write
  net-fwd  numbered frames through the ixgbe device's udp wire, the driver behind its
           shadow and an l2fwd domain: none corrupted, duplicated or reordered, losses
           only when the fault hit that path
  MODULE:FUNCTION  a user's loop (see user.py)

May call: domains, drivers, supervisor (manifests only through drivers), shared_heap.
"""

from __future__ import annotations

BUILTIN = ("echo", "nvme-rw", "net-fwd")


def get(name: str, tmpdir: str):
    """The workload called `name` (built-in, or `module:function`)."""
    if name == "echo":
        from .echo import EchoWorkload

        return EchoWorkload(tmpdir)
    if name == "nvme-rw":
        from .nvme_rw import NvmeRwWorkload

        return NvmeRwWorkload(tmpdir)
    if name == "net-fwd":
        from .net_fwd import NetFwdWorkload

        return NetFwdWorkload(tmpdir)
    if ":" in name:
        from .user import UserWorkload

        return UserWorkload(name, tmpdir)
    raise ValueError(f"unknown workload {name!r}; built-in: {', '.join(BUILTIN)}, or MODULE:FUNCTION")
