"""Fuzz target `manifest`: random and mutated TOML manifests through the parser.

Every input goes through supervisor.manifest.parse_manifest, which must either return
a Manifest or raise ManifestError with a message; any other exception escapes
`redleaf up` as a traceback, and is counted as a crash.  Inputs, each one of:
- structured: a valid manifest (heap, supervisor, devices, domains with every field)
  whose fields are then mutated: a value replaced by one of another type or out of
  range (huge, negative, NaN, inf, dates, nested tables), a key added, removed or
  renamed, a name duplicated, a `uses` naming nobody or making a cycle, a section
  turned into a scalar or an array; serialised to TOML here;
- textual: such a manifest's text with bytes flipped, lines dropped, duplicated or
  swapped, or TOML fragments inserted;
- random: printable noise and random bytes (decoded leniently).
`shadow = true` makes the parser import the driver in a forked child
(supervisor/probe.py); the targets drawn here are this project's own classes and
names that do not import, so nothing else is imported.

May call: supervisor.manifest.
"""

from __future__ import annotations

import datetime
import json
import math
import random

from redleaf.supervisor.manifest import ManifestError, parse_manifest

from .tally import Tally

TARGETS = ["redleaf.domains.builtin.echo:EchoDomain", "redleaf.drivers.nvme.domain:NvmeDriver",
           "a.b:C", "no_such_module_xyz:Thing", "redleaf.domains.builtin.echo:Echo", "bad target",
           "domains.builtin.echo:EchoDomain"]
NAMES = ["echo", "nvme0", "e2", "x", "client-1", "a.b", "Z_9", "1bad", "", "n" * 60]
FIELDS = {"name", "target", "restart", "max_restarts", "period_s", "backoff_s", "backoff_max_s",
          "config", "uses", "shadow", "watchdog_s", "group", "isolation", "driver_group"}


def _odd(rng: random.Random):
    """A value of any TOML type, often out of range."""
    k = rng.randrange(12)
    if k == 0:
        return rng.choice([0, -1, 1, 2 ** 63 - 1, -2 ** 63, 2 ** 31, 1 << 20, (1 << 20) + 1, 86401])
    if k == 1:
        return rng.choice([0.0, -0.0, -1.5, 1e308, 1e-308, math.inf, -math.inf, math.nan, 86400.0, 5e-324])
    if k == 2:
        return rng.random() < 0.5
    if k == 3:
        return rng.choice(["", "0MiB", "1MiB", "64MiB", "100GiB", "-5MiB", "1.5MiB", "1e3", "16 MiB", "KiB",
                           "99999999999999999999MiB", "permanent", "language", "process"])
    if k == 4:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(20)))
    if k == 5:
        return datetime.datetime(2000 + rng.randrange(50), 1 + rng.randrange(12), 1 + rng.randrange(28),
                                 rng.randrange(24), rng.randrange(60))
    if k == 6:
        return rng.choice([datetime.date(2020, 2, 29), datetime.time(12, 30)])
    if k == 7:
        return [_odd(rng) for _ in range(rng.randrange(3))] if rng.random() < 0.7 else \
            rng.sample(NAMES, rng.randrange(3))
    if k == 8:
        return {rng.choice(NAMES + ["k", "driver"]): _odd(rng) for _ in range(rng.randrange(3))}
    if k == 9:
        return rng.choice(NAMES)
    if k == 10:
        return rng.choice(TARGETS)
    return "x" * rng.choice([100, 70 << 10])


def base(rng: random.Random) -> dict:
    """A valid manifest (as parsed TOML) with a few domains and maybe a device."""
    doc: dict = {"heap": {"size": rng.choice(["1MiB", "4MiB", 8 << 20]), "records": rng.choice([4096, 1024])},
                 "supervisor": {"watchdog_s": rng.choice([1, 2.5, 10])}, "domain": []}
    names = rng.sample(["echo", "e2", "e3", "e4"], rng.randint(1, 4))
    for i, n in enumerate(names):
        d = {"name": n, "target": TARGETS[0], "restart": rng.choice(["permanent", "transient", "temporary"]),
             "max_restarts": rng.randrange(10), "period_s": rng.choice([1, 5.0]), "backoff_s": 0.01,
             "config": {"k": rng.randrange(9)}}
        if i and rng.random() < 0.5:
            d["uses"] = rng.sample(names[:i], 1)
        if rng.random() < 0.3:
            d["group"] = "g1"
        doc["domain"].append(d)
    if rng.random() < 0.3:
        doc["device"] = [{"name": "dev0", "target": "redleaf.drivers.nvme.device:NvmeDevice",
                          "config": {"image": "nvme0.img", "size": "1MiB"}}]
    return doc


def mutate(rng: random.Random, doc: dict) -> dict:
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(9)
        ents = [d for d in doc["domain"] if isinstance(d, dict)] if isinstance(doc.get("domain"), list) else []
        if k == 0:  # a section field gets an odd value
            sect = rng.choice(["heap", "supervisor"])
            if isinstance(doc.get(sect), dict):
                doc[sect][rng.choice(["size", "records", "watchdog_s", "sise"])] = _odd(rng)
        elif k == 1 and ents:  # a domain field gets an odd value
            rng.choice(ents)[rng.choice(sorted(FIELDS))] = _odd(rng)
        elif k == 2 and ents:  # a field removed or an unknown one added
            d = rng.choice(ents)
            if d and rng.random() < 0.5:
                del d[rng.choice(sorted(d))]
            else:
                d[rng.choice(["nmae", "Name", "", "shadow ", "x.y"])] = _odd(rng)
        elif k == 3 and ents:  # a duplicate name
            rng.choice(ents)["name"] = ents[0].get("name", "echo")
        elif k == 4 and ents:  # uses: nobody, itself, or a cycle
            a, b = rng.choice(ents), rng.choice(ents)
            a["uses"] = rng.choice([[b.get("name", "x")], ["nobody"], {"role": b.get("name", "x")}, {"r": 5}])
            b["uses"] = [a.get("name", "x")]
        elif k == 5:  # a section of the wrong shape
            doc[rng.choice(["heap", "supervisor", "domain", "device", "extra"])] = _odd(rng)
        elif k == 6 and ents:  # shadow and placement
            d = rng.choice(ents)
            d["shadow"] = rng.choice([True, False, 1, "yes"])
            d["target"] = rng.choice(TARGETS)
            if rng.random() < 0.5:
                d["driver_group"] = rng.choice(["", "g2", "1x", 3])
            if rng.random() < 0.5:
                d["isolation"] = rng.choice(["language", "process", "thread", ""])
        elif k == 7:  # many domains
            n = rng.choice([10, 254, 255, 1000])  # the domain table holds 254
            doc["domain"] = [{"name": f"d{i}", "target": TARGETS[0], "uses": [f"d{i + 1}"] if i + 1 < n else []}
                             for i in range(n)]
        elif ents:
            rng.choice(ents)["config"] = {"deep": _nest(rng, rng.randrange(1, 40))}
    return doc


def _nest(rng, depth):
    v = _odd(rng) if rng.random() < 0.5 else 1
    for _ in range(depth):
        v = {"a": v}
    return v


def _key(k) -> str:
    return json.dumps(str(k))


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_val(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict) -> str:
    """Serialise what base() and mutate() make (tables, arrays of tables, inline values)."""
    out = []
    for k, v in doc.items():
        if not isinstance(v, (dict, list)) or (isinstance(v, list) and not all(isinstance(x, dict) for x in v)) \
                or (isinstance(v, list) and not v):
            out.insert(0, f"{_key(k)} = {_val(v)}")  # a top-level scalar goes before any table
        elif isinstance(v, dict):
            out.append(f"[{_key(k)}]")
            out.extend(f"{_key(a)} = {_val(b)}" for a, b in v.items())
        else:
            for t in v:
                out.append(f"[[{_key(k)}]]")
                out.extend(f"{_key(a)} = {_val(b)}" for a, b in t.items())
    return "\n".join(out) + "\n"


_FRAGMENTS = ["[heap]", "[[domain]]", "[[device]]", "name = ", "= =", "[", "]]", '"', "'''", '"""', "\\u0000",
              "target = \"a:b\"", "uses = [", "}", "{", "\x00", "\r", "\ufeff", "# c", "a.b.c = 1", "[domain]"]


def text_mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 5)):
        k = rng.randrange(5)
        i = rng.randrange(len(lines))
        if k == 0 and len(lines) > 1:
            del lines[i]
        elif k == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif k == 2:
            lines.insert(i, rng.choice(_FRAGMENTS) + rng.choice(["", " 1", " \"x\"", rng.choice(_FRAGMENTS)]))
        elif k == 3 and lines[i]:
            s = list(lines[i])
            j = rng.randrange(len(s))
            s[j] = chr(rng.randrange(0, 0x250))
            lines[i] = "".join(s)
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def gen_input(rng: random.Random) -> tuple[str, str]:
    k = rng.randrange(10)
    if k < 6:
        return "structured", to_toml(mutate(rng, base(rng)))
    if k < 9:
        return "textual", text_mutate(rng, to_toml(base(rng)))
    if rng.random() < 0.5:
        return "random", "".join(chr(rng.randrange(9, 127)) for _ in range(rng.randrange(200)))
    return "random", rng.randbytes(rng.randrange(200)).decode("utf-8", errors="replace")


def check(text: str, category: str, tally: Tally) -> None:
    try:
        parse_manifest(text, "fuzz.toml")
    except ManifestError as e:
        if str(e):
            tally.refuse(str(e)[:300], category)
        else:
            tally.confuse(f"{category}: ManifestError without a message for {text[:300]!r}")
    except Exception as e:
        tally.crash(f"{category}: {type(e).__name__}: {e} for {text[:500]!r}")
    else:
        tally.accept(category)


def run(count: int, seed: int) -> dict:
    tally = Tally("manifest", seed)
    rng = random.Random(seed)
    for _ in range(count):
        category, text = gen_input(rng)
        check(text, category, tally)
    return tally.result()
