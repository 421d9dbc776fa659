"""The TOML manifest: which domains and devices an instance boots, and how.

```toml
[heap]
size = "256MiB"          # exchange heap arena
records = 262144          # ownership-table records

[supervisor]
watchdog_s = 5.0          # a domain whose heartbeat stalls this long is killed

[[device]]                # emulated hardware: a process that is not a domain
name = "nvme0-dev"
target = "redleaf.drivers.nvme.device:NvmeDevice"
config = { image = "nvme0.img", size = "64MiB" }

[[domain]]
name = "echo"
target = "redleaf.domains.builtin.echo:EchoDomain"
restart = "permanent"     # permanent | transient | temporary
max_restarts = 5          # restart intensity: at most this many ...
period_s = 10.0           # ... within this period, else the domain is `failed`
backoff_s = 0.05          # first delay of the exponential backoff
config = { }
uses = ["other"]          # names this domain calls; booted before it
shadow = false            # true: boot the driver as `<name>.driver` behind the shadow
                          # its class names in SHADOW, which clients reach as `<name>`
group = "io"              # optional: run in the host process of group "io" with the other
                          # domains of that group (isolation = "language", DESIGN §7a);
                          # without it the domain is its own process (isolation = "process")
driver_group = "io"       # with shadow = true: the driver's group ("" = its own process);
                          # by default the driver shares the shadow's placement
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import msgpack
import psutil

from redleaf.domains.units import SizeError
from redleaf.domains.units import parse_size as _parse_size
from redleaf.shared_heap.layout import Layout

RESTART_POLICIES = ("permanent", "transient", "temporary")
# Bounds that keep a typo from becoming a host-wide event: a heap is a tmpfs file every
# domain maps, so it must fit in /dev/shm and in memory with room to spare.
MAX_DOMAINS = 256             # the supervisor's domain table (ids 1..MAX_DOMAINS-1)
MIN_HEAP = 1 << 20
SHM_DIR = "/dev/shm"
HEAP_SHARE = 0.5              # at most this share of /dev/shm's free space and of free memory
MAX_CONFIG_BYTES = 64 << 10   # a domain's config travels in one zygote datagram
MAX_COUNT = 1 << 20           # max_restarts
MAX_SECONDS = 86400.0         # period_s, backoff_s, watchdog_s: a day is already absurd
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")


class ManifestError(ValueError):
    """The manifest is not valid; the message names the entry and the field."""


def parse_size(v, where: str) -> int:
    try:
        return _parse_size(v, where)
    except SizeError as e:
        raise ManifestError(str(e)) from None


# Our packages' names before they moved under the redleaf namespace: a manifest written
# for them gets told the new name instead of a bare ModuleNotFoundError.
_OLD_TOP = ("supervisor", "domains", "shared_heap", "drivers", "rv6", "bench")


def check_target(target, where: str) -> str:
    if not isinstance(target, str) or not _TARGET_RE.match(target):
        raise ManifestError(f"{where}: target {target!r} must look like 'package.module:Class'")
    top = target.split(":", 1)[0].split(".", 1)[0]
    if top in _OLD_TOP and target.count(".") >= 1:
        raise ManifestError(f"{where}: target {target!r} uses an old import name; "
                            f"redleaf's packages now live under 'redleaf.': use 'redleaf.{target}'")
    return target


def check_name(name, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(f"{where}: name {name!r} must start with a letter and use letters, digits, '_', '.', '-'")
    return name


@dataclass
class DomainSpec:
    name: str
    target: str
    restart: str = "permanent"
    max_restarts: int = 5
    period_s: float = 10.0
    backoff_s: float = 0.05
    backoff_max_s: float = 5.0
    config: dict = field(default_factory=dict)
    uses: dict = field(default_factory=dict)  # role -> exported name
    shadow: bool = False
    watchdog_s: float | None = None
    kind: str = "domain"  # or "device"
    companion: str | None = None  # a shadow's driver (unloaded together with it)
    path: str | None = None  # a directory to import the target from (`redleaf load` sends its cwd)
    group: str | None = None  # the host process it shares (isolation = "language"); None: its own
    driver_group: str | None = None  # shadow = true: the driver's group ("" its own process; None: as group)
    #: may it start children (domain command spawn_child), and the one target they all run
    may_spawn: bool = False
    spawn_target: str | None = None

    @property
    def isolation(self) -> str:
        return "language" if self.group else "process"

    def to_wire(self) -> dict:
        return {"name": self.name, "target": self.target, "restart": self.restart, "config": self.config,
                "uses": self.uses, "shadow": self.shadow, "kind": self.kind, "path": self.path,
                "group": self.group}


@dataclass
class Manifest:
    heap_size: int = 256 << 20
    heap_records: int = 1 << 18
    watchdog_s: float = 5.0
    devices: list[DomainSpec] = field(default_factory=list)
    domains: list[DomainSpec] = field(default_factory=list)
    source: str = "<default>"

    def boot_order(self) -> list[DomainSpec]:
        """Devices first, then domains so that every domain starts after what it uses."""
        by_name = {d.name: d for d in self.domains}
        order, state = [], {}

        def visit(d: DomainSpec, path: list[str]):
            st = state.get(d.name)
            if st == "done":
                return
            if st == "visiting":
                raise ManifestError(f"dependency cycle: {' -> '.join(path + [d.name])}")
            state[d.name] = "visiting"
            for dep in d.uses.values():
                if dep in by_name:
                    visit(by_name[dep], path + [d.name])
            state[d.name] = "done"
            order.append(d)

        for d in self.domains:
            visit(d, [])
        return list(self.devices) + order


def domain_spec(raw: dict, where: str, kind: str = "domain") -> DomainSpec:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: must be a table")
    known = {"name", "target", "restart", "max_restarts", "period_s", "backoff_s", "backoff_max_s",
             "config", "uses", "shadow", "watchdog_s", "group", "isolation", "driver_group",
             "may_spawn", "spawn_target"}
    unknown = set(raw) - known
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if "name" not in raw or "target" not in raw:
        raise ManifestError(f"{where}: needs `name` and `target`")
    name = check_name(raw["name"], where)
    where = f"{where} ({name})"
    spec = DomainSpec(name=name, target=check_target(raw["target"], where), kind=kind)
    restart = raw.get("restart", "permanent" if kind == "domain" else "permanent")
    if restart not in RESTART_POLICIES:
        raise ManifestError(f"{where}: restart {restart!r} must be one of {', '.join(RESTART_POLICIES)}")
    spec.restart = restart
    for f in ("max_restarts",):
        if f in raw:
            v = raw[f]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_COUNT:
                raise ManifestError(f"{where}: {f} must be an integer from 0 to {MAX_COUNT}, not {v!r}")
            setattr(spec, f, v)
    for f in ("period_s", "backoff_s", "backoff_max_s", "watchdog_s"):
        if f in raw:
            v = raw[f]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= MAX_SECONDS:
                raise ManifestError(f"{where}: {f} must be a number of seconds from 0 to {MAX_SECONDS:g}, not {v!r}")
            if f == "watchdog_s" and v == 0:
                raise ManifestError(f"{where}: watchdog_s must be more than 0 (leave it out for the instance's)")
            setattr(spec, f, float(v))
    cfg = raw.get("config", {})
    if not isinstance(cfg, dict):
        raise ManifestError(f"{where}: config must be a table")
    check_config_size(cfg, where)
    spec.config = cfg
    uses = raw.get("uses", [])
    if isinstance(uses, list) and all(isinstance(u, str) for u in uses):  # [[]] cannot be a dict key
        uses = {u: u for u in uses}
    if not isinstance(uses, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in uses.items()):
        raise ManifestError(f"{where}: uses must be a list of names or a table role = \"name\"")
    spec.uses = dict(uses)
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        raise ManifestError(f"{where}: shadow must be true or false")
    spec.shadow = shadow
    _placement(raw, spec, where, kind)
    _spawning(raw, spec, where, kind)
    return spec


def _spawning(raw: dict, spec: DomainSpec, where: str, kind: str) -> None:
    """`may_spawn` grants the domain command spawn_child; the children all run the one
    `spawn_target` the manifest names (a domain cannot choose what code it starts)."""
    may = raw.get("may_spawn", False)
    if not isinstance(may, bool):
        raise ManifestError(f"{where}: may_spawn must be true or false")
    target = raw.get("spawn_target")
    if may and target is None:
        raise ManifestError(f"{where}: may_spawn = true needs spawn_target = \"package.module:Class\" "
                            f"(what every child runs)")
    if target is not None and not may:
        raise ManifestError(f"{where}: spawn_target only applies with may_spawn = true")
    if may and (kind != "domain" or spec.shadow or spec.group):
        raise ManifestError(f"{where}: may_spawn is for a plain domain (no device, shadow or group)")
    spec.may_spawn = may
    spec.spawn_target = check_target(target, where) if may else None


def _placement(raw: dict, spec: DomainSpec, where: str, kind: str) -> None:
    """`isolation` and `group` (DESIGN §7a): a group implies language isolation, and
    language isolation needs a group to share (one process per group)."""
    iso = raw.get("isolation")
    group = raw.get("group")
    if iso is not None and iso not in ("process", "language"):
        raise ManifestError(f"{where}: isolation {iso!r} must be \"process\" or \"language\"")
    for key, v in (("group", group), ("driver_group", raw.get("driver_group"))):
        if v is not None and v != "" and not (isinstance(v, str) and _NAME_RE.match(v)):
            raise ManifestError(f"{where}: {key} {v!r} must start with a letter and use letters, digits, "
                                f"'_', '.', '-'")
    if group == "":
        group = None
    if iso == "language" and not group:
        raise ManifestError(f"{where}: isolation = \"language\" needs group = \"NAME\" (the domains of a group "
                            f"share one host process)")
    if iso == "process" and group:
        raise ManifestError(f"{where}: group {group!r} means isolation = \"language\", not \"process\"")
    if group and kind != "domain":
        raise ManifestError(f"{where}: only domains can join a group; a device is its own process")
    spec.group = group
    if "driver_group" in raw:
        if not spec.shadow:
            raise ManifestError(f"{where}: driver_group only applies with shadow = true")
        spec.driver_group = raw["driver_group"]


def check_config_size(cfg: dict, where: str) -> None:
    try:
        n = len(msgpack.packb(cfg))
    except (TypeError, ValueError, OverflowError) as e:
        raise ManifestError(f"{where}: config cannot be sent to a domain: {e}") from None
    if n > MAX_CONFIG_BYTES:
        raise ManifestError(f"{where}: config is {n} bytes encoded, more than {MAX_CONFIG_BYTES}; "
                            f"put bulk data in a file and pass its path")


def check_heap_fits(size: int, records: int, where: str, shm_dir: str = SHM_DIR) -> int:
    """The heap file's whole size, once it is known to fit the machine; before anything
    is created, so a typo fails here rather than in the OOM killer."""
    if size < MIN_HEAP:
        raise ManifestError(f"{where}: heap size {size} is below the minimum of {MIN_HEAP >> 20} MiB")
    try:
        lay = Layout.compute(size, records, MAX_DOMAINS)
    except ValueError as e:
        raise ManifestError(f"{where}: {e}") from None
    import shutil

    try:
        shm_free = shutil.disk_usage(shm_dir).free
    except OSError as e:
        raise ManifestError(f"{where}: cannot check {shm_dir}: {e.strerror}") from None
    mem_free = psutil.virtual_memory().available
    limit = int(min(shm_free, mem_free) * HEAP_SHARE)
    if lay.file_size > limit:
        raise ManifestError(
            f"{where}: the heap ({size >> 20} MiB arena, {records} records) needs a "
            f"{lay.file_size >> 20} MiB file, more than {limit >> 20} MiB (half of what {shm_dir} "
            f"and memory have free: {shm_free >> 20} MiB, {mem_free >> 20} MiB); make [heap] size "
            f"or records smaller")
    return lay.file_size


#: expand_shadow's "nobody probed the driver yet" (None means it declares no shadow)
_UNPROBED = object()


def expand_shadow(spec: DomainSpec, shadow_target=_UNPROBED) -> list[DomainSpec]:
    """`shadow = true` turns one driver entry into two domains, as in RedLeaf: the
    real driver under `<name>.driver`, and under the public `<name>` the shadow class
    the driver names in its `SHADOW` attribute.  The shadow forwards every call and,
    when the driver dies, waits for its restart and recovers what was in flight as
    the device's semantics allow (the NVMe shadow re-issues requests; the NIC
    shadow drops in-flight packets, as a NIC reset would, rather than risk sending
    one twice), so that a driver crash never reaches the clients as an error.

    `shadow_target` is the driver's SHADOW (None: it has none) when the caller already
    learnt it (the supervisor asks the zygote, asynchronously); without it the class is
    imported in a forked child (supervisor/probe.py), never in this process, since
    importing is running domain code.  Returns [driver, shadow] or [spec]."""
    if not spec.shadow:
        return [spec]
    where = f"domain {spec.name}"
    if shadow_target is _UNPROBED:
        from .probe import ProbeError, resolve_shadow

        try:
            shadow_target = resolve_shadow(spec.target, spec.path)
        except ProbeError as e:
            raise ManifestError(f"{where}: shadow = true needs the driver class to import: {e}") from None
    if not isinstance(shadow_target, str):
        raise ManifestError(f"{where}: shadow = true, but {spec.target} declares no shadow; "
                            f"give the class SHADOW = \"package.module:ShadowClass\" or drop `shadow`")
    driver_name = f"{spec.name}.driver"
    check_name(driver_name, where)
    dgroup = spec.group if spec.driver_group is None else (spec.driver_group or None)
    driver = replace(spec, name=driver_name, shadow=False, group=dgroup, driver_group=None)
    shadow = replace(spec, target=check_target(shadow_target, f"{where} SHADOW"), shadow=True,
                     config=dict(spec.config, driver=driver_name), uses=dict(spec.uses, driver=driver_name),
                     companion=driver_name, driver_group=None)
    return [driver, shadow]


def _section(raw: dict, name: str, known: set, source: str) -> dict:
    sect = raw.get(name, {})
    if not isinstance(sect, dict):
        raise ManifestError(f"{source}: [{name}] must be a table, not {type(sect).__name__}")
    unknown = set(sect) - known
    if unknown:
        raise ManifestError(f"{source} [{name}]: unknown key(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(known))}")
    return sect


#: ids a manifest's devices and domains can have: the table's, less the supervisor's (and 0)
MAX_ENTRIES = MAX_DOMAINS - 2


def _check_slots(n: int, source: str) -> None:
    """Refuse more entries than the domain table holds, here rather than at boot (where
    the rest would fail one by one), and so that boot_order's walk stays shallow."""
    if n > MAX_ENTRIES:
        raise ManifestError(f"{source}: {n} devices and domains (a shadowed driver counts twice) are more "
                            f"than the {MAX_ENTRIES} an instance can run; split them over instances")


def parse_manifest(text: str, source: str = "<string>") -> Manifest:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{source}: not valid TOML: {e}") from None
    m = Manifest(source=source)
    unknown = set(raw) - {"heap", "supervisor", "domain", "device"}
    if unknown:
        raise ManifestError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
    heap = _section(raw, "heap", {"size", "records"}, source)
    if "size" in heap:
        m.heap_size = parse_size(heap["size"], f"{source} [heap] size")
    if "records" in heap:
        v = heap["records"]
        if not isinstance(v, int) or isinstance(v, bool):
            raise ManifestError(f"{source} [heap] records must be an integer, not {v!r}")
        m.heap_records = v
    check_heap_fits(m.heap_size, m.heap_records, f"{source} [heap]")
    sup = _section(raw, "supervisor", {"watchdog_s"}, source)
    if "watchdog_s" in sup:
        v = sup["watchdog_s"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= MAX_SECONDS:
            raise ManifestError(f"{source} [supervisor] watchdog_s must be a number of seconds "
                                f"above 0 and at most {MAX_SECONDS:g}, not {v!r}")
        m.watchdog_s = float(v)
    for sect in ("device", "domain"):
        if not isinstance(raw.get(sect, []), list):
            raise ManifestError(f"{source}: write each {sect} as [[{sect}]], a list of tables")
    _check_slots(len(raw.get("device", [])) + len(raw.get("domain", [])), source)  # before any probe
    names = set()
    for i, d in enumerate(raw.get("device", [])):
        spec = domain_spec(d, f"{source} [[device]] #{i + 1}", kind="device")
        m.devices.append(spec)
    for i, d in enumerate(raw.get("domain", [])):
        m.domains.extend(expand_shadow(domain_spec(d, f"{source} [[domain]] #{i + 1}")))
    _check_slots(len(m.devices) + len(m.domains), source)  # a shadow is two domains
    for spec in m.devices + m.domains:
        if spec.name in names:
            raise ManifestError(f"{source}: the name {spec.name!r} is used twice")
        names.add(spec.name)
    for spec in m.domains:
        unknown = [u for u in spec.uses.values() if u not in names]
        if unknown:
            raise ManifestError(f"{source}: domain {spec.name!r} uses {', '.join(map(repr, unknown))}, "
                                f"which the manifest does not define; known: {', '.join(sorted(names))}")
    m.boot_order()  # rejects cycles now, not at boot
    return m


def load_manifest(path: str | Path | None) -> Manifest:
    if path is None:
        text = resources.files("redleaf.supervisor").joinpath("default.toml").read_text()
        return parse_manifest(text, "default.toml")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ManifestError(f"cannot read manifest {p}: {e.strerror}") from None
    return parse_manifest(text, str(p))
