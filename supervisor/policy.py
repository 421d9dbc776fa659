"""Restart policy, as in Erlang/OTP: pure logic the daemon asks after every exit.

permanent: always restarted.  transient: restarted only after an abnormal exit
(a crash, a kill, a non-zero status).  temporary: never restarted.  Restart
intensity: more than `max_restarts` restarts within `period_s` seconds and the
domain is `failed` instead (a crash loop must end, not spin).  Backoff: the first
restart in a quiet period is immediate, then each delay doubles up to a cap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decision:
    action: str  # "restart" | "stop" | "fail"
    delay_s: float = 0.0
    reason: str = ""


@dataclass
class RestartTracker:
    policy: str = "permanent"
    max_restarts: int = 5
    period_s: float = 10.0
    backoff_s: float = 0.05
    backoff_max_s: float = 5.0
    history: deque = field(default_factory=deque)

    def on_exit(self, now: float, abnormal: bool, requested: bool = False) -> Decision:
        if requested:
            return Decision("stop", reason="stopped on request")
        if self.policy == "temporary":
            return Decision("stop", reason="temporary domains are not restarted")
        if self.policy == "transient" and not abnormal:
            return Decision("stop", reason="transient domain exited normally")
        while self.history and now - self.history[0] > self.period_s:
            self.history.popleft()
        if len(self.history) >= self.max_restarts:
            return Decision("fail", reason=f"{len(self.history) + 1} exits within {self.period_s:g}s "
                                           f"exceed the restart intensity ({self.max_restarts} restarts)")
        recent = len(self.history)
        self.history.append(now)
        delay = 0.0 if recent == 0 else min(self.backoff_max_s, self.backoff_s * (2 ** (recent - 1)))
        return Decision("restart", delay, reason=f"restart {recent + 1} within {self.period_s:g}s")
