"""Settings: defaults are valid, and every error names the variable to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autorecovery.settings import ENV_PREFIX, Settings, load_settings
from models.errors import InvalidInput
from tests.support.processes import REPO
from tests.support.servers import TEST_SETTINGS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTORECOVERY_* variable from the caller's shell leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults_are_valid() -> None:
    s = load_settings()
    assert s.database_url is None and s.redis_url is None and s.broker_url is None
    assert s.effective_broker_url is None
    assert s.data_dir == Path(".autorecovery")
    assert (s.tick_interval_s, s.batch_size, s.report_max_age_s) == (10.0, 500, 30.0)
    assert s.activation_soft_limit_s < s.activation_time_limit_s < s.lock_ttl_s
    assert s.init_timeout_s < s.activation_soft_limit_s
    assert s.init_timeout_s < s.init_max_s  # a v1 hold outlasts the call that missed its answer
    assert s.init_poll_s < s.init_max_s
    assert s.visibility_timeout_s > s.activation_time_limit_s
    assert s.reap_running_after_s == s.activation_time_limit_s + s.lock_ttl_s


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORECOVERY_BATCH_SIZE", "100")
    monkeypatch.setenv("AUTORECOVERY_TICK_INTERVAL_S", "2.5")
    monkeypatch.setenv("AUTORECOVERY_REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("AUTORECOVERY_UNKNOWN_THING", "ignored")
    s = load_settings()
    assert (s.batch_size, s.tick_interval_s) == (100, 2.5)
    assert s.effective_broker_url == "redis://r:6379/0"
    monkeypatch.setenv("AUTORECOVERY_BROKER_URL", "amqp://b//")
    assert load_settings().effective_broker_url == "amqp://b//"


def test_the_test_suite_timings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_SETTINGS.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.lock_ttl_s == float(TEST_SETTINGS["AUTORECOVERY_LOCK_TTL_S"])


FIELD_ERRORS = [
    ("AUTORECOVERY_BATCH_SIZE", "lots"),
    ("AUTORECOVERY_BATCH_SIZE", "0"),
    ("AUTORECOVERY_BATCH_SIZE", "10001"),
    ("AUTORECOVERY_BATCH_SIZE", "2.5"),
    ("AUTORECOVERY_TICK_INTERVAL_S", "0"),
    ("AUTORECOVERY_TICK_INTERVAL_S", "-1"),
    ("AUTORECOVERY_TICK_INTERVAL_S", "ten"),
    ("AUTORECOVERY_REPORT_MAX_AGE_S", "0"),
    ("AUTORECOVERY_AGENT_TIMEOUT_S", "soon"),
    ("AUTORECOVERY_AGENT_CONCURRENCY", "0"),
    ("AUTORECOVERY_AGENT_RETRIES", "11"),
    ("AUTORECOVERY_AGENT_RETRIES", "-1"),
    ("AUTORECOVERY_TASK_MAX_RETRIES", "21"),
    ("AUTORECOVERY_DB_POOL_MAX", "0"),
    ("AUTORECOVERY_API_PORT", "70000"),
    ("AUTORECOVERY_API_PORT", "http"),
    ("AUTORECOVERY_VISIBILITY_TIMEOUT_S", "0"),
    ("AUTORECOVERY_ACTIVATION_QUEUED_TTL_S", "0"),
]


@pytest.mark.parametrize(("name", "value"), FIELD_ERRORS, ids=[f"{n}={v}" for n, v in FIELD_ERRORS])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert info.value.field == name
    assert str(info.value).startswith(name + ": ")
    assert info.value.message


CROSS_ERRORS = [
    ({"AUTORECOVERY_LOCK_TTL_S": "30"}, "AUTORECOVERY_LOCK_TTL_S"),
    ({"AUTORECOVERY_LOCK_TTL_S": "10"}, "AUTORECOVERY_LOCK_TTL_S"),
    ({"AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "45"}, "AUTORECOVERY_LOCK_TTL_S"),
    ({"AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S": "30"}, "AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S"),
    ({"AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "25"}, "AUTORECOVERY_ACTIVATION_TIME_LIMIT_S"),
    ({"AUTORECOVERY_INIT_TIMEOUT_S": "25"}, "AUTORECOVERY_INIT_TIMEOUT_S"),
    ({"AUTORECOVERY_INIT_MAX_S": "10"}, "AUTORECOVERY_INIT_TIMEOUT_S"),
    ({"AUTORECOVERY_INIT_POLL_S": "120"}, "AUTORECOVERY_INIT_POLL_S"),
    ({"AUTORECOVERY_VISIBILITY_TIMEOUT_S": "30"}, "AUTORECOVERY_VISIBILITY_TIMEOUT_S"),
]


@pytest.mark.parametrize(("env", "named"), CROSS_ERRORS, ids=[str(e) for e, _ in CROSS_ERRORS])
def test_inconsistent_limits_name_the_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("tick_s", "poll_s", "after_s", "ok"),
    [
        (10.0, 2.0, 60.0, True),  # the defaults
        (10.0, 2.0, 12.5, True),
        (10.0, 2.0, 12.0, False),  # exactly one interval plus the poll: gone between two rounds
        (10.0, 2.0, 10.0, False),
        (30.0, 2.0, 20.0, False),  # a slower tick alone makes the default-ish window too short
        (1.0, 0.3, 3.0, True),  # the storage integration test's timings
    ],
)
def test_the_domain_inactive_window_must_outlast_a_tick_and_an_init_poll(
    tick_s: float, poll_s: float, after_s: float, ok: bool
) -> None:
    def build() -> Settings:
        return Settings(tick_interval_s=tick_s, init_poll_s=poll_s, sd_inactive_after_s=after_s)

    if ok:
        assert build().sd_inactive_after_s == after_s
        return
    with pytest.raises(InvalidInput) as info:
        build()
    assert info.value.field == "AUTORECOVERY_SD_INACTIVE_AFTER_S"
    assert (
        "AUTORECOVERY_TICK_INTERVAL_S" in info.value.message
        and "AUTORECOVERY_INIT_POLL_S" in info.value.message
    )


def test_lock_ttl_above_the_time_limit_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORECOVERY_LOCK_TTL_S", "30.5")
    assert load_settings().lock_ttl_s == 30.5


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.batch_size = 3  # type: ignore[misc]


# --- the agent token, CA bundle and networks ----------------------------------------------------


def test_the_agent_token_is_read_at_start_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "agent-token"
    token_file.write_text("tok-9f3a\n")
    monkeypatch.setenv("AUTORECOVERY_AGENT_TOKEN_FILE", str(token_file))
    s = load_settings()
    assert s.agent_token is not None and s.agent_token.get_secret_value() == "tok-9f3a"
    assert "tok-9f3a" not in repr(s) and "tok-9f3a" not in str(s.model_dump())


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_a_missing_or_empty_token_file_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    token_file = tmp_path / "agent-token"
    if content is not None:
        token_file.write_text(content)
    monkeypatch.setenv("AUTORECOVERY_AGENT_TOKEN_FILE", str(token_file))
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert info.value.field == "AUTORECOVERY_AGENT_TOKEN_FILE"


def test_a_missing_ca_file_and_bad_networks_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTORECOVERY_AGENT_CA_FILE", str(tmp_path / "nope.pem"))
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert info.value.field == "AUTORECOVERY_AGENT_CA_FILE"
    monkeypatch.delenv("AUTORECOVERY_AGENT_CA_FILE")
    monkeypatch.setenv("AUTORECOVERY_AGENT_NETWORKS", "10.0.0.0/8, not-a-cidr")
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert info.value.field == "AUTORECOVERY_AGENT_NETWORKS"


def test_the_products_own_endpoints_are_refused_as_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORECOVERY_DATABASE_URL", "postgresql://u:p@db.internal/x")
    monkeypatch.setenv("AUTORECOVERY_REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("AUTORECOVERY_BROKER_URL", "amqp://guest:guest@127.0.0.1//")
    services = load_settings().agent_url_policy().services
    assert {("db.internal", 5432), ("127.0.0.1", 6390), ("127.0.0.1", 5672), ("127.0.0.1", 8800)} <= services


def _import_workers(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the Celery app in a fresh interpreter with only ``env`` among our variables."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    code = "import workers; print(workers.app.conf.broker_url)"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_celery_app_refuses_to_start_without_a_broker() -> None:
    with pytest.raises(InvalidInput) as err:
        load_settings().require_broker_url()
    assert err.value.field == "AUTORECOVERY_BROKER_URL"
    assert "AUTORECOVERY_REDIS_URL" in err.value.message
    done = _import_workers({})
    assert done.returncode != 0
    assert "AUTORECOVERY_BROKER_URL" in done.stderr and "amqp://guest" not in done.stdout


def test_the_celery_broker_defaults_to_the_redis_url() -> None:
    done = _import_workers({"AUTORECOVERY_REDIS_URL": "redis://r.example:6379/0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "redis://r.example:6379/0"
