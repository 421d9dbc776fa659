"""Manifests for an instance with one emulated NVMe device and its driver.

Used by the integration tests and the benchmarks, and the reference for the
default manifest.  With `shadow=True` the supervisor boots the real driver as
`<name>.driver` and the driver class's SHADOW (redleaf.drivers.nvme.shadow:NvmeShadow)
under the public name (see supervisor.manifest.expand_shadow).
"""

from __future__ import annotations

import json

DEVICE_TARGET = "redleaf.drivers.nvme.device:NvmeDevice"
DRIVER_TARGET = "redleaf.drivers.nvme.domain:NvmeDriver"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} into a manifest")


def nvme_manifest(image: str, size: str = "16MiB", *, name: str = "nvme0", shadow: bool = False,
                  heap: str = "64MiB", sync: str = "fdatasync", queue_depth: int = 256,
                  max_restarts: int = 1000, period_s: float = 10.0, backoff_s: float = 0.005,
                  watchdog_s: float = 10.0, device_config: dict | None = None) -> str:
    dev = f"{name}-dev"
    restart = (f'restart = "permanent"\nmax_restarts = {max_restarts}\nperiod_s = {period_s}\n'
               f"backoff_s = {backoff_s}\nbackoff_max_s = 0.05\n")
    drv_cfg = {"device": dev, "queue_depth": queue_depth}
    out = [
        f'[heap]\nsize = "{heap}"\nrecords = 65536\n',
        f"[supervisor]\nwatchdog_s = {watchdog_s}\n",
        f'[[device]]\nname = "{dev}"\ntarget = "{DEVICE_TARGET}"\n'
        f"config = {_toml_value({'image': image, 'size': size, 'sync': sync, **(device_config or {})})}\n",
    ]
    out.append(f'[[domain]]\nname = "{name}"\ntarget = "{DRIVER_TARGET}"\n{restart}'
               f"shadow = {_toml_value(shadow)}\nconfig = {_toml_value(drv_cfg)}\n")
    return "\n".join(out)
