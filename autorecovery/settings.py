"""The one place that reads the environment: every tunable, validated at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.errors import InvalidInput
from models.safety import CapPolicy

ENV_PREFIX = "AUTORECOVERY_"


class Settings(BaseSettings):
    """Configuration from ``AUTORECOVERY_*`` variables; the README's table lists them all."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # URLs may carry passwords and tokens are secrets: none of them shows in a repr.
    database_url: str | None = Field(None, repr=False, description="PostgreSQL URL; unset: embedded")
    redis_url: str | None = Field(None, repr=False, description="Redis URL for locks; unset: embedded")
    broker_url: str | None = Field(None, repr=False, description="Celery broker; unset: the Redis URL")
    data_dir: Path = Field(Path(".autorecovery"), description="embedded servers' data")

    tick_interval_s: float = Field(10.0, gt=0, description="seconds between monitoring ticks")
    batch_size: int = Field(500, ge=1, le=10_000, description="hosts per tick batch")
    report_max_age_s: float = Field(30.0, gt=0, description="older reports are stale")
    agent_timeout_s: float = Field(2.0, gt=0, description="timeout of a report pull")
    agent_concurrency: int = Field(200, ge=1, le=5_000, description="report pulls at once")
    init_timeout_s: float = Field(20.0, gt=0, description="timeout of an agent's init call")
    agent_retries: int = Field(3, ge=0, le=10, description="retries of a failed agent call")

    lock_ttl_s: float = Field(40.0, gt=0, description="host lock TTL, renewed while running")
    activation_soft_limit_s: float = Field(25.0, gt=0, description="activation soft time limit")
    activation_time_limit_s: float = Field(30.0, gt=0, description="activation hard time limit")
    activation_queued_ttl_s: float = Field(60.0, gt=0, description="a queued activation expires")
    task_max_retries: int = Field(5, ge=0, le=20, description="retries of a task on transient errors")
    visibility_timeout_s: int = Field(3600, gt=0, description="Redis broker visibility timeout")

    cluster_cap: str = Field(
        "25%",
        pattern=r"^(\d+|\d+(\.\d+)?%)$",
        description="activations in flight per cluster: a number, or a share like '25%' (at least 1)",
    )
    fleet_cap: int = Field(50, ge=1, description="activations in flight across the fleet")
    backoff_max_s: float = Field(
        3600.0, gt=0, description="longest wait after failed automatic activations (from one tick)"
    )
    flap_limit: int = Field(
        5, ge=2, description="automatic recoveries or failures in the window that quarantine a host"
    )
    flap_window_s: float = Field(3600.0, gt=0, description="window of the flap count")
    observer_max_silent_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="above this share of hosts without fresh data, no automatic activation",
    )
    observer_quiet_period: bool = Field(
        True, description="after a start or a gap, wait for one full tick of fresh data"
    )
    incident_min_hosts: int = Field(
        3, ge=2, description="hosts of a cluster out for one storage domain or network: an incident"
    )
    incident_window_s: float = Field(300.0, gt=0, description="window of the incident count")

    sd_inactive_after_s: float = Field(
        60.0, gt=0, description="a storage domain no up host reached for this long goes inactive"
    )
    charge_limit: int = Field(
        3, ge=1, description="charges (VMs failed here, started elsewhere) that put a host in error"
    )
    charge_window_s: float = Field(1800.0, gt=0, description="charges older than this decay")
    error_period_s: float = Field(1800.0, gt=0, description="how long a host stays in error")
    placement_charge_penalty: float = Field(
        20.0, ge=0, description="placement score taken off per recent charge"
    )

    db_pool_max: int = Field(10, ge=1, le=200, description="PostgreSQL pool size per process")

    beat_lock_timeout_s: float = Field(
        30.0,
        ge=3,
        description="beat's leader lock in Redis expires unless renewed; a second beat takes over "
        "within this long after the leader dies",
    )
    retention_audit_days: float = Field(
        90.0, gt=0, description="audit log entries older than this are pruned"
    )
    retention_activations_days: float = Field(
        30.0,
        gt=0,
        description="closed activations (hosts, storage domains) and finished ticks older than this "
        "are pruned",
    )
    retention_vm_runs_days: float = Field(
        30.0, gt=0, description="VM runs and their charges older than this are pruned"
    )
    prune_batch_size: int = Field(
        5000, ge=100, le=100_000, description="rows deleted per statement (and transaction) by the pruning"
    )

    api_tokens: str = Field(
        "", repr=False, description="'name:role:token' entries, comma-separated; role viewer or admin"
    )
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(8800, ge=0, le=65535, description="API port")
    api_url: str = Field("http://127.0.0.1:8800", description="API URL for the CLI")
    token: SecretStr | None = Field(
        None, description="the CLI's bearer token for the API (one of AUTORECOVERY_API_TOKENS)"
    )
    api_dev_token: bool = Field(
        False,
        description="with no API tokens: serve with an admin token kept in <data_dir>/admin-token "
        "(loopback bind only); otherwise the API refuses to start",
    )

    failpoints: str = Field("", description="test only: comma-separated failpoints, e.g. 'stop_before_init'")

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        # Raised as InvalidInput (not ValueError) so that the error names the variable itself.
        rules = [
            (
                "activation_soft_limit_s",
                self.activation_soft_limit_s < self.activation_time_limit_s,
                "must be below AUTORECOVERY_ACTIVATION_TIME_LIMIT_S",
            ),
            (
                "activation_time_limit_s",
                self.activation_time_limit_s < self.lock_ttl_s,
                "must be below AUTORECOVERY_LOCK_TTL_S, so that a lock never expires under a "
                "running activation",
            ),
            (
                "init_timeout_s",
                self.init_timeout_s < self.activation_soft_limit_s,
                "must be below AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S",
            ),
            (
                "retention_vm_runs_days",
                self.retention_vm_runs_days * 86400 > self.charge_window_s,
                "must be longer than AUTORECOVERY_CHARGE_WINDOW_S (charges in the window count)",
            ),
            (
                "retention_activations_days",
                self.retention_activations_days * 86400 > self.flap_window_s,
                "must be longer than AUTORECOVERY_FLAP_WINDOW_S (recent activations count)",
            ),
            (
                "visibility_timeout_s",
                self.visibility_timeout_s > self.activation_time_limit_s,
                "must be above AUTORECOVERY_ACTIVATION_TIME_LIMIT_S",
            ),
        ]
        for name, ok, message in rules:
            if not ok:
                raise InvalidInput(ENV_PREFIX + name.upper(), message)
        return self

    def cap_policy(self) -> CapPolicy:
        """The caps on activations in flight."""
        text = self.cluster_cap
        if text.endswith("%"):
            return CapPolicy(cluster_share=float(text[:-1]) / 100.0, fleet_max=self.fleet_cap)
        return CapPolicy(cluster_max=int(text), cluster_share=None, fleet_max=self.fleet_cap)

    @property
    def effective_broker_url(self) -> str | None:
        """The broker: its own URL, else the Redis URL."""
        return self.broker_url or self.redis_url

    def require_broker_url(self) -> str:
        """Return the broker URL, or refuse (Celery would otherwise try amqp://guest@localhost).

        Raises:
            InvalidInput: neither AUTORECOVERY_BROKER_URL nor AUTORECOVERY_REDIS_URL is set.
        """
        url = self.effective_broker_url
        if not url:
            raise InvalidInput(
                ENV_PREFIX + "BROKER_URL",
                "no broker: set AUTORECOVERY_BROKER_URL, or AUTORECOVERY_REDIS_URL (the default broker)",
            )
        return url

    @property
    def tick_min_spacing_s(self) -> float:
        """A tick claimed sooner than this after the previous one is a duplicate: one per interval."""
        return 0.75 * self.tick_interval_s

    @property
    def tick_deadline_s(self) -> float:
        """A tick unfinished after this is abandoned by the next one, which takes over."""
        return max(3 * self.tick_interval_s, 10.0)

    @property
    def reap_running_after_s(self) -> float:
        """How long a running activation may go before the tick declares it abandoned."""
        return self.activation_time_limit_s + self.lock_ttl_s


def load_settings() -> Settings:
    """Read and validate the environment.

    Raises:
        InvalidInput: naming the first variable that is wrong.
    """
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        name = ENV_PREFIX + str(loc[0]).upper() if loc else "configuration"
        raise InvalidInput(name, str(err.get("msg", exc))) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings, read once."""
    return load_settings()
