"""The fault plan: which faults fire, when, of what kind and at which target, as a pure
function of the seed and the campaign's options.  No I/O, no clock: the same seed
gives the same plan on any machine, so `--seed S --replay K` re-runs fault K exactly.

A fault names its target by `pick`, a random integer the campaign resolves against
the sorted list of matching targets when it fires (the names depend on the instance,
not on the plan).  Faults sharing a `wave` fire together: one fault a wave for the
`fixed` and `poisson` schedules, several back-to-back for `burst`, several in the
same instant on distinct targets for `simultaneous`.  Invariants are checked after
each wave, once its targets are back.

May call: nothing of ours.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

#: the kinds a campaign injects by default (--faults not given)
FAULT_KINDS = ("sigkill", "sigsegv", "exception", "exit", "hang", "stop", "slow")
#: kinds only on request: `supervisor` (kill -9 of the supervisor, then `up` again)
#: rebuilds the whole instance, so a default plan (and every seed's plan) stays as it was
EXTRA_KINDS = ("supervisor",)
ALL_KINDS = FAULT_KINDS + EXTRA_KINDS
#: kinds whose target is the instance itself, not a domain picked from --targets
INSTANCE_KINDS = ("supervisor",)
#: the kinds that land inside a call of a method the workload makes (see `inject`);
#: at a target the workload does not call, the signal of the same name is used
IN_CALL_KINDS = ("exception", "exit", "hang", "slow")
SCHEDULES = ("fixed", "poisson", "burst", "simultaneous")
DEFAULT_RATE = 2.0  # faults a second when only a count is given
BURST_SIZES = (2, 5)  # faults in a burst (inclusive range)
BURST_GAP_S = 0.02  # between the faults of one burst
SIMULTANEOUS_SIZES = (2, 3)


class PlanError(ValueError):
    """Options that do not make a plan (the message says which and why)."""


@dataclass(frozen=True)
class Fault:
    index: int  # 0-based position in the plan: the replay key
    wave: int  # faults of one wave fire together
    at_s: float  # when, from the campaign's start (the campaign never fires earlier)
    kind: str
    pick: int  # resolves to a target: sorted(matching)[pick % len(matching)] (distinct within a wave)
    nth: int  # for in-call kinds: the Nth call of the method after arming (1..3)
    method_pick: int  # which of the workload's methods at that target
    hold_s: float  # `stop`: how long the target stays stopped before SIGCONT

    def as_dict(self) -> dict:
        return asdict(self)


def parse_kinds(text: str | None) -> tuple[str, ...]:
    if not text:
        return FAULT_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad or not kinds:
        raise PlanError(f"unknown fault kind(s) {', '.join(bad) or '(none given)'}; "
                        f"choose among {', '.join(ALL_KINDS)}")
    return tuple(dict.fromkeys(kinds))


def make_plan(seed: int, *, kinds=FAULT_KINDS, schedule: str = "fixed", rate: float | None = None,
              count: int | None = None, duration: float | None = None) -> list[Fault]:
    """The whole plan.  Give `count` (how many faults), or `duration` (seconds; with
    `rate`, or DEFAULT_RATE), or both (then the count is spread over the duration,
    unless a rate is given too: whichever ends first)."""
    if schedule not in SCHEDULES:
        raise PlanError(f"unknown schedule {schedule!r}; choose among {', '.join(SCHEDULES)}")
    if not kinds:
        raise PlanError("no fault kinds to choose from")
    for k in kinds:
        if k not in ALL_KINDS:
            raise PlanError(f"unknown fault kind {k!r}; choose among {', '.join(ALL_KINDS)}")
    if count is None and duration is None:
        raise PlanError("give --count C or --duration D (with --rate R) to bound the campaign")
    if count is not None and count < 0:
        raise PlanError(f"--count must be >= 0, got {count}")
    if duration is not None and not duration > 0:
        raise PlanError(f"--duration must be > 0 seconds, got {duration}")
    if rate is None:  # `--count C --duration D` spreads C faults over D seconds
        rate = count / duration if count and duration else DEFAULT_RATE
    if not (rate > 0 and math.isfinite(rate)):
        raise PlanError(f"--rate must be a positive number of faults a second, got {rate}")
    rng = random.Random(seed)
    kinds = tuple(kinds)
    out: list[Fault] = []
    t = 0.0
    wave = 0
    limit = count if count is not None else math.inf
    while len(out) < limit:
        if schedule == "burst":
            size = rng.randint(*BURST_SIZES)
            gap = BURST_GAP_S
            step = max(size / rate, size * gap)  # bursts keep the mean rate, and never overlap
        elif schedule == "simultaneous":
            size = rng.randint(*SIMULTANEOUS_SIZES)
            gap = 0.0
            step = size / rate
        else:
            size, gap = 1, 0.0
            step = rng.expovariate(rate) if schedule == "poisson" else 1.0 / rate
        if duration is not None and t >= duration:
            break
        for j in range(size):
            if len(out) >= limit:
                break
            out.append(Fault(index=len(out), wave=wave, at_s=round(t + j * gap, 6), kind=rng.choice(kinds),
                             pick=rng.getrandbits(31), nth=rng.randint(1, 3), method_pick=rng.getrandbits(16),
                             hold_s=round(rng.uniform(0.05, 0.5), 4)))
        wave += 1
        t += step
    return out


def waves(plan: list[Fault]) -> list[list[Fault]]:
    """The plan grouped by wave, in order."""
    out: list[list[Fault]] = []
    for f in plan:
        if out and out[-1][0].wave == f.wave:
            out[-1].append(f)
        else:
            out.append([f])
    return out


def resolve_targets(wave: list[Fault], targets: list[str]) -> list[str]:
    """The target of each fault of a wave: by its pick among the sorted targets, and
    distinct within the wave while there are enough (a simultaneous wave hits
    several domains at once; with fewer targets than faults, some share one)."""
    if not targets:
        return []
    pool = sorted(targets)
    out = []
    for f in wave:
        free = [t for t in pool if t not in out] or pool
        out.append(free[f.pick % len(free)])
    return out
