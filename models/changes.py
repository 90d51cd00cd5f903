"""What an evaluation depended on, so that a tick evaluates only hosts whose inputs changed.

An evaluation (``policy.evaluate``) is a pure function of the host's row, its activation in
flight, its report, the cluster context, and the time. The first four make a key the store
keeps with the decision (the row by its version, the others by their ids and hashes); the time
matters only at known instants (a report going stale, a hold, an error period, a backoff or a
pause ending), the earliest of which is kept beside it.
While the key is the same and that instant has not come, evaluating again would give the same
transition (none), the same decision and the same counts: the tick counts the stored ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from operator import attrgetter

from models.assessment import Assessment
from models.domain import Cluster, Host, Reason, Report
from models.policy import Decision
from models.safety import Gates

#: Report fields the policy does not read: when it was made (staleness is checked apart, with
#: the time), how it came (push or pull), and what it counts.
NOT_ASSESSED = frozenset({"reported_at", "source", "vms_running", "mem_free_mb"})
#: A key for a host that must be evaluated again next tick, whatever changed.
NO_KEY = None
#: Decisions never remembered: an activation is admitted (or not) by the tick that decides it.
_ALWAYS_AGAIN = frozenset({"activate"})


_PLAIN = frozenset({str, bool, int, float, type(None)})
#: The field names of each dataclass met (``dataclasses.fields`` is slow, and a tick hashes a
#: report's ``agent`` for every pulled host).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind))
    return names


def _canonical(value: object) -> object:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, frozenset | set):
        return tuple(sorted(_canonical(v) for v in value))  # type: ignore[type-var]
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if is_dataclass(value) and not isinstance(value, type):
        return tuple((name, _canonical(getattr(value, name))) for name in _field_names(type(value)))
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    return value


def _hash(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


#: The report fields the digest covers, in order: every field but those in ``NOT_ASSESSED``.
ASSESSED = tuple(f.name for f in fields(Report) if f.name not in NOT_ASSESSED)
_assessed_values = attrgetter(*ASSESSED)


def report_digest(report: Report) -> str:
    """Hash what the policy reads of a report: every field but those in ``NOT_ASSESSED``.

    A field added to ``Report`` is part of the digest unless named there. Plain values, sets and
    flat mappings (what reports hold) take a fast path: a tick hashes every pulled report.
    """
    parts: list[object] = []
    for value in _assessed_values(report):
        kind = type(value)
        if kind in _PLAIN:
            parts.append(value)
        elif kind is frozenset:
            parts.append(tuple(sorted(value)))
        elif kind is dict and all(type(v) in _PLAIN for v in value.values()):
            parts.append(tuple(sorted(value.items())))
        elif kind in _FIELD_NAMES:  # a dataclass met before (the agent's state, an init)
            parts.append(tuple((n, _canonical(getattr(value, n))) for n in _FIELD_NAMES[kind]))
        else:
            parts.append(_canonical(value))
    return _hash(repr(parts))


class ReportDigests:
    """Each host's last report digest, hashed again only when what the policy reads changed.

    A steady host's pulled report equals its last one in every assessed field: comparing the
    fields (a tuple of its values) costs a fraction of hashing them. Typed reports' equal values
    have one canonical form (sets and mappings are sorted in it), so the digest is the same.
    """

    def __init__(self, max_hosts: int = 200_000) -> None:
        self.max_hosts = max_hosts
        self._last: dict[str, tuple[tuple[object, ...], str]] = {}

    def digest(self, report: Report) -> str:
        """The report's digest (``report_digest``), remembered for its host."""
        values = _assessed_values(report)
        last = self._last.get(report.host_id)
        if last is not None and last[0] == values:
            return last[1]
        digest = report_digest(report)
        if len(self._last) >= self.max_hosts:
            self._last.clear()
        self._last[report.host_id] = (values, digest)
        return digest


def context_key(clusters: Mapping[str, Cluster], gates: Gates) -> str:
    """Hash the cluster context a tick evaluates against (clusters, pauses, inactive domains)."""
    return _hash(repr((_canonical(dict(clusters)), _canonical(gates))))


def evaluation_key(host_key: str, digest: str | None, context: str) -> str:
    """The key of one evaluation; ``host_key`` is the store's key of the host's row.

    The store builds the same key in SQL (``host_key || '|' || digest || '|' || context``) for
    every host of a batch: its parts are hashes or numbers already, so it is not hashed again.
    """
    return f"{host_key}|{digest or '-'}|{context}"


def is_fresh(report: Report | None, now: datetime, max_report_age_s: float) -> bool:
    """True when the report is neither stale nor dated too far ahead (what ``assess`` checks)."""
    return is_fresh_at(None if report is None else report.reported_at, now, max_report_age_s)


def is_fresh_at(reported_at: datetime | None, now: datetime, max_report_age_s: float) -> bool:
    """``is_fresh`` of a report dated ``reported_at`` (None: no report)."""
    if reported_at is None:
        return False
    age_s = (now - reported_at).total_seconds()
    return -max_report_age_s <= age_s <= max_report_age_s


def valid_until(
    host: Host, gates: Gates, now: datetime, assessment: Assessment, decision: Decision
) -> datetime | None:
    """Until when an evaluation holds with time alone; None when it must be made again next tick.

    Staleness is not here: the store checks the report's age at each tick.
    """
    if decision.code in _ALWAYS_AGAIN:
        return None
    if any(p.reason in (Reason.STALE_REPORT, Reason.NO_REPORT) for p in assessment.problems):
        return None  # their details count seconds: evaluated every tick, as before
    instants = [host.init_hold_until, host.error_until, host.next_attempt_at]
    instants += [pause.expires_at for pause in gates.pauses.values()]
    later = [t for t in instants if t is not None and t > now]
    return min(later) if later else now + timedelta(days=3650)
