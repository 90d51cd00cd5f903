"""Review: a retry of an activation's first step keeps its first message's absolute expiry.

``_send_activation`` gives the message ``expires=activation_message_ttl_s`` (20 s by default);
Celery's ``Task.retry`` copies the request's ``expires`` into the retried message
(``Context.as_execution_options``), and a worker drops an expired message as revoked without
calling ``on_failure``. A lock-busy retry waits the lock's remaining TTL (up to 40 s) and
transient retries back off up to 30 s, so they are dropped: nothing gives the activation up,
and it waits, ``sending``, for the housekeeping's reap.
"""

from __future__ import annotations

import os
import sys

import pytest
from celery.app.task import Context

from autorecovery.settings import Settings


def test_a_retry_carries_the_first_messages_expiry_which_the_busy_wait_outlasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "workers" not in sys.modules and not (
        os.environ.get("AUTORECOVERY_BROKER_URL") or os.environ.get("AUTORECOVERY_REDIS_URL")
    ):
        monkeypatch.setenv("AUTORECOVERY_BROKER_URL", "memory://")
    import workers.tasks as tasks

    expires = "2026-12-07T06:00:20+00:00"  # sent at 06:00:00 with the 20 s message TTL
    request = Context(
        id="act-1",
        kwargs={"host_id": "h1", "activation_id": "act-1"},
        expires=expires,
        delivery_info={},
        retries=0,
    )
    retried = tasks.init_vds_on_up.signature_from_request(request, countdown=40.0)
    assert retried.options["expires"] == expires
    defaults = Settings.model_construct()
    assert defaults.activation_message_ttl_s < defaults.lock_ttl_s  # the busy wait outlasts it
