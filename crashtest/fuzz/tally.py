"""The count every fuzz target keeps, and the report dict its run() returns.

Owns: the counters and the example messages.  Calls nothing of ours.

An input ends in exactly one of:
- refused: a bad input cleanly rejected (the boundary's own error type, with a message);
- accepted: the boundary took it (it was well formed, or harmless);
- unclear: neither (an internal error, silence, a foreign exception type): a finding;
- crash: the supervisor or an innocent domain died, or a pure model raised out of
  its boundary or hung: a finding.
The report's `crashes` must be 0 and so must `unclear`; `findings` holds what to
reproduce them from (each message carries the input's index, so `run(index + 1, seed)`
reaches it again).
"""

from __future__ import annotations

MAX_EXAMPLES = 5
MAX_FINDINGS = 20


class Tally:
    def __init__(self, target: str, seed: int):
        self.target = target
        self.seed = seed
        self.inputs = 0
        self.refused = 0
        self.accepted = 0
        self.unclear = 0
        self.crashes = 0
        self.examples: list[str] = []
        self.findings: list[str] = []
        self.kinds: dict[str, int] = {}

    def _note(self, kind: str | None) -> None:
        if kind:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def refuse(self, message: str, kind: str | None = None) -> None:
        self.inputs += 1
        self.refused += 1
        self._note(kind)
        if len(self.examples) < MAX_EXAMPLES and message not in self.examples:
            self.examples.append(message)

    def accept(self, kind: str | None = None) -> None:
        self.inputs += 1
        self.accepted += 1
        self._note(kind)

    def _finding(self, what: str, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(f"input {self.inputs} (seed {self.seed}): {what}: {message}")

    def confuse(self, message: str) -> None:
        """A bad input answered neither with a clear error nor accepted."""
        self._finding("unclear", message)
        self.inputs += 1
        self.unclear += 1

    def crash(self, message: str, counted: bool = True) -> None:
        """The supervisor or an innocent domain died (or a model raised out of its
        boundary). `counted=False`: found by a check after the input was counted."""
        if counted:
            self._finding("crash", message)
            self.inputs += 1
        else:
            self.findings.append(f"after input {self.inputs} (seed {self.seed}): crash: {message}") \
                if len(self.findings) < MAX_FINDINGS else None
        self.crashes += 1

    def result(self) -> dict:
        return {"target": self.target, "seed": self.seed, "inputs": self.inputs,
                "crashes": self.crashes, "unclear": self.unclear, "refused": self.refused,
                "accepted": self.accepted, "errors": list(self.examples),
                "findings": list(self.findings), "kinds": dict(sorted(self.kinds.items()))}
