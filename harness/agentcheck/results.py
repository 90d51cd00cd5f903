"""What one conformance check found: PASS, FAIL or SKIP, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    """A check's verdict."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's verdict and the reason for it."""

    name: str
    verdict: Verdict
    why: str

    def line(self) -> str:
        """Render the one line ``agent-check`` prints for this check."""
        return f"{self.verdict.value} {self.name}: {self.why}"


@dataclass(slots=True)
class Results:
    """The checks' results, in the order they ran."""

    items: list[Result] = field(default_factory=list)

    def add(self, name: str, verdict: Verdict, why: str) -> Result:
        """Record one result and return it."""
        result = Result(name, verdict, why)
        self.items.append(result)
        return result

    def passed(self, name: str, why: str) -> None:
        """Record a pass."""
        self.add(name, Verdict.PASS, why)

    def failed(self, name: str, why: str) -> None:
        """Record a failure."""
        self.add(name, Verdict.FAIL, why)

    def skipped(self, name: str, why: str) -> None:
        """Record a check that could not or should not run."""
        self.add(name, Verdict.SKIP, why)

    def check(self, name: str, problem: str | None, why_ok: str) -> bool:
        """Record a pass when ``problem`` is None, else a failure naming it; return the pass."""
        if problem is None:
            self.passed(name, why_ok)
            return True
        self.failed(name, problem)
        return False

    @property
    def has_failure(self) -> bool:
        """True when any check failed."""
        return any(r.verdict is Verdict.FAIL for r in self.items)
