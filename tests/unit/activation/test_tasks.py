"""workers/tasks.py: retry, give-up, the soft time limit, and failed outcomes shown as failures.

The tasks run in this process through Celery's own tracer (``Task.apply``), retries included,
with the container's services replaced by scripted ones; nothing reaches a broker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from autorecovery.services.activation import LockBusyRetry, Outcome
from models.errors import ActivationFailed, StoreUnavailable

ACTIVATION_TASK = "autorecovery.init_vds_on_up"
STORAGE_TASK = "autorecovery.activate_storage_domain"


@dataclass
class ScriptedService:
    """Answers ``run`` from a script; records every run and give-up."""

    script: Callable[[int], Outcome]
    runs: int = 0
    #: What ``is_queued`` answers (the activation has not begun), or raises.
    queued: bool | Exception = False
    given_up: list[tuple[str, str, str]] = field(default_factory=list)

    def run(self, activation_id: str, object_id: str, task_id: str | None = None) -> Outcome:
        self.runs += 1
        return self.script(self.runs)

    def check(self, activation_id: str, object_id: str, task_id: str | None = None) -> Outcome:
        self.runs += 1
        return self.script(self.runs)

    def is_queued(self, activation_id: str) -> bool:
        if isinstance(self.queued, Exception):
            raise self.queued
        return self.queued

    def give_up(self, activation_id: str, object_id: str, error: str) -> bool:
        self.given_up.append((activation_id, object_id, error))
        return True


@dataclass
class Harness:
    task: Task
    service: ScriptedService
    countdowns: list[float]

    def apply(self, **kwargs: Any) -> Any:
        return self.task.apply(kwargs={"activation_id": "act-1", **kwargs}, task_id="act-1")


def raising(exc: Exception) -> Callable[[int], Outcome]:
    def script(_: int) -> Outcome:
        raise exc

    return script


def outcome(code: str, *, failed: bool = False) -> Callable[[int], Outcome]:
    return lambda _: Outcome("act-1", "h1", code, "detail", 1, failed=failed)


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Harness]]:
    # Imported here, not at collection: importing ``workers`` reads the settings once for the
    # whole session, and the integration tests set the environment for them first. Alone (a unit
    # run with no service URL), the app gets kombu's in-memory broker: these tasks run in-process
    # with the container replaced, and nothing is sent.
    if "workers" not in sys.modules and not (
        os.environ.get("AUTORECOVERY_BROKER_URL") or os.environ.get("AUTORECOVERY_REDIS_URL")
    ):
        monkeypatch.setenv("AUTORECOVERY_BROKER_URL", "memory://")
    import workers
    import workers.tasks  # noqa: F401 - registers the tasks

    def make(script: Callable[[int], Outcome], task_name: str = ACTIVATION_TASK) -> Harness:
        service = ScriptedService(script)
        monkeypatch.setattr(workers, "_container", SimpleNamespace(activation=service, storage=service))
        monkeypatch.setattr(workers, "_container_pid", os.getpid())  # built in this process
        task = workers.app.tasks[task_name]
        countdowns: list[float] = []
        real_retry = task.retry

        def spy(*args: Any, **kwargs: Any) -> Any:
            countdowns.append(kwargs["countdown"])
            return real_retry(*args, **kwargs)

        monkeypatch.setattr(task, "retry", spy)
        return Harness(task, service, countdowns)

    yield make


def test_a_success_returns_the_outcome(harness: Callable[..., Harness]) -> None:
    h = harness(outcome("up"))
    result = h.apply(host_id="h1")
    assert result.state == "SUCCESS"
    assert result.result["outcome"] == "up"
    assert (h.service.runs, h.service.given_up, h.countdowns) == (1, [], [])


def test_a_transient_error_is_retried_with_bounded_backoff_then_given_up(
    harness: Callable[..., Harness],
) -> None:
    h = harness(raising(StoreUnavailable("PostgreSQL failed")))
    result = h.apply(host_id="h1")
    max_retries = h.task.max_retries
    assert result.state == "FAILURE"
    assert h.service.runs == max_retries + 1
    assert len(h.countdowns) == max_retries + 1  # the last call finds the budget spent
    assert all(0 <= c <= min(30, 2 * 2**n) for n, c in enumerate(h.countdowns))
    assert h.service.given_up == [("act-1", "h1", "retries exhausted: PostgreSQL failed")]


def test_a_busy_lock_is_retried_after_the_locks_remaining_ttl(harness: Callable[..., Harness]) -> None:
    h = harness(raising(LockBusyRetry("held by another delivery", retry_after_s=40.0)))
    result = h.apply(host_id="h1")
    assert result.state == "FAILURE"
    assert h.countdowns and all(40.0 <= c <= 41.0 for c in h.countdowns)
    # The budget covers the TTL many times over; giving up then is the service's call (under the lock).
    assert sum(h.countdowns[:-1]) >= 40.0
    assert [g[1] for g in h.service.given_up] == ["h1"]


def test_the_soft_time_limit_gives_up_without_a_retry(harness: Callable[..., Harness]) -> None:
    h = harness(raising(SoftTimeLimitExceeded()))
    result = h.apply(host_id="h1")
    assert result.state == "FAILURE"
    assert (h.service.runs, h.countdowns) == (1, [])
    [(_, host, error)] = h.service.given_up
    assert host == "h1" and error.startswith("SoftTimeLimitExceeded")


def test_a_failed_activation_ends_the_task_failed_after_recording_it(harness: Callable[..., Harness]) -> None:
    h = harness(outcome("failed", failed=True))
    result = h.apply(host_id="h1")
    assert result.state == "FAILURE"
    assert isinstance(result.result, ActivationFailed)
    assert "act-1 failed" in str(result.result)
    assert (h.service.runs, h.service.given_up, h.countdowns) == (1, [], [])


def test_a_skip_is_not_a_failure(harness: Callable[..., Harness]) -> None:
    assert harness(outcome("has_problems")).apply(host_id="h1").state == "SUCCESS"


def test_the_storage_task_gives_up_its_domain(harness: Callable[..., Harness]) -> None:
    h = harness(raising(SoftTimeLimitExceeded()), STORAGE_TASK)
    assert h.apply(sd_id="sd-1").state == "FAILURE"
    assert [g[1] for g in h.service.given_up] == ["sd-1"]


# --- a retry's message can still start when it is due ----------------------------------------------


def _retried_expiry(h: Harness, countdown_s: float) -> tuple[datetime, datetime, Any]:
    """Retry a first step whose message (20 s TTL) was sent just now; its due time and expiry.

    Celery's ``Task.retry`` copies the request's absolute ``expires`` into the retried message,
    and a worker drops a message past it as revoked, without ``on_failure``.
    """
    sent = datetime.now(UTC)
    first = (sent + timedelta(seconds=20)).isoformat()
    kwargs = {"host_id": "h1", "activation_id": "act-1"}
    h.task.push_request(
        id="act-1",
        kwargs=kwargs,
        expires=first,
        delivery_info={},
        retries=0,
        is_eager=True,
        called_directly=False,
    )
    try:
        retry = h.task.retry(
            exc=LockBusyRetry("held", retry_after_s=countdown_s), countdown=countdown_s, throw=False
        )
    finally:
        h.task.pop_request()
    assert isinstance(retry, Retry)
    expires = retry.sig.options["expires"]
    return sent + timedelta(seconds=countdown_s), first, expires


@pytest.mark.parametrize("countdown_s", [40.0, 30.0])  # a lock-busy wait; a transient backoff's cap
def test_a_retry_of_a_begun_activation_expires_after_it_is_due(
    harness: Callable[..., Harness], countdown_s: float
) -> None:
    h = harness(outcome("up"))
    due, _, expires = _retried_expiry(h, countdown_s)
    expires_at = expires if isinstance(expires, datetime) else datetime.fromisoformat(expires)
    assert expires_at > due + timedelta(seconds=10), "the retry would be dropped as revoked"


@pytest.mark.parametrize("queued", [True, StoreUnavailable("PostgreSQL down")], ids=["queued", "unreadable"])
def test_a_retry_of_a_queued_activation_keeps_its_first_expiry(
    harness: Callable[..., Harness], queued: bool | Exception
) -> None:
    # The housekeeping re-sends a queued activation once its message can no longer start: a
    # retry outliving that message could run beside the re-sent one.
    h = harness(outcome("up"))
    h.service.queued = queued
    _, first, expires = _retried_expiry(h, 40.0)
    assert expires == first


def test_the_next_check_is_sent_under_the_id_its_step_named_and_expires_like_a_first_step(
    harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a check message expires ``activation_message_ttl_s`` after it is due, so the
    housekeeping's re-send of a lost one never runs beside a late one; its task id is the one
    its step recorded as the activation's next check (the only one that may act)."""
    import workers

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        workers.app, "send_task", lambda name, **options: sent.append({"name": name, **options})
    )
    h = harness(
        lambda _: Outcome("act-1", "h1", "sent", "detail", 1, check_in_s=4.0, next_check_id="chk-2")
    )
    assert h.apply(host_id="h1").successful()
    [message] = sent
    assert (message["name"], message["task_id"], message["countdown"]) == (
        "autorecovery.check_init",
        "chk-2",
        4.0,
    )
    assert message["expires"] == 4.0 + workers.settings.activation_message_ttl_s
    assert message["kwargs"] == {
        "host_id": "h1", "activation_id": "act-1", "trigger": "auto", "actor": "auto"
    }
