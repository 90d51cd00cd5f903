"""The one place that reads the environment: every tunable, validated at start."""

from __future__ import annotations

import hashlib
import ipaddress
import tempfile
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from autorecovery.secret_strength import weak_token_reason
from models.agent_url import AgentUrlPolicy, IPNetwork, endpoint
from models.credentials import AgentCredentials
from models.errors import InvalidInput
from models.safety import CapPolicy

ENV_PREFIX = "AUTORECOVERY_"
#: Seconds past a message's expiry before it is re-sent: the sender's and the workers' clocks
#: (which set and check the expiry) may disagree by this much.
MESSAGE_EXPIRY_MARGIN_S = 2.0


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
    pushed_batch_size: int = Field(
        10_000,
        ge=1,
        le=100_000,
        description="hosts per tick batch when they pushed their reports (none to pull)",
    )
    report_max_age_s: float = Field(30.0, gt=0, description="older reports are stale")
    agent_timeout_s: float = Field(2.0, gt=0, description="timeout of a report pull")
    agent_concurrency: int = Field(200, ge=1, le=5_000, description="report pulls at once")
    agent_dns_ttl_s: float = Field(
        60.0,
        ge=0,
        description="an agent's name is resolved (and its addresses checked) once per this long",
    )
    agent_keepalive_s: float = Field(
        30.0,
        gt=0,
        description="an idle connection to an agent is kept this long (above the tick interval: "
        "each tick reuses the last one's)",
    )
    init_timeout_s: float = Field(
        20.0,
        gt=0,
        description="timeout of one init call (a v1 agent's init blocks for at most this; a v2 agent "
        "answers at once that it runs it)",
    )
    init_max_s: float = Field(
        120.0,
        gt=0,
        description="longest an init may run: an init whose outcome is not known (running, or its "
        "answer unseen) holds its host initializing, with no second init, this long after the "
        "answer was seen or missed; then the activation is abandoned, uncharged, and backed off",
    )
    init_poll_s: float = Field(
        2.0,
        gt=0,
        description="how soon a sent init's outcome is first asked for (the check step's countdown); "
        "then half the time the init has run, up to AUTORECOVERY_INIT_POLL_MAX_S",
    )
    init_poll_max_s: float = Field(
        15.0,
        gt=0,
        description="the longest wait between two checks of a long-running init (a hung agent costs "
        "a check this often, not one every AUTORECOVERY_INIT_POLL_S)",
    )
    agent_retries: int = Field(3, ge=0, le=10, description="retries of a failed agent call")
    agent_max_report_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="most bytes read of an agent's answer, as received and once inflated",
    )
    max_clock_skew_s: float = Field(
        30.0, gt=0, description="reports dated further ahead of the product's clock are refused"
    )
    agent_token_file: Path | None = Field(
        None, description="file holding the bearer token sent on every agent call (read at start)"
    )
    agent_key_file: Path | None = Field(
        None,
        description="file holding the product's agent key (e.g. `openssl rand -hex 32`): each host's "
        "agent token is HMAC-SHA256(key, host id), written by `autorecovery hosts enroll`; "
        "unset: the fleet token of AUTORECOVERY_AGENT_TOKEN_FILE",
    )
    agent_previous_key_file: Path | None = Field(
        None,
        description="the key before a rotation: a call an agent answers 401 is tried once with its "
        "token, until every agent is re-enrolled with the new key; then unset it",
    )
    agent_plain_http_networks: str = Field(
        "",
        description="CIDRs, comma-separated, where an agent credential may be sent over plain "
        "http:// (given as an address); default: https or loopback only",
    )
    agent_ca_file: Path | None = Field(
        None, description="CA bundle verifying https:// agents; unset: the system's CAs"
    )
    agent_networks: str = Field(
        "",
        description="CIDRs, comma-separated: when set, agents must be inside them "
        "(link-local, metadata and the product's own ports are refused regardless)",
    )

    lock_ttl_s: float = Field(
        40.0,
        gt=0,
        description="TTL of an object's lock, taken for one step of its activation (never renewed: "
        "above the step's hard time limit)",
    )
    activation_soft_limit_s: float = Field(25.0, gt=0, description="soft time limit of one activation step")
    activation_time_limit_s: float = Field(30.0, gt=0, description="hard time limit of one activation step")
    activation_queued_ttl_s: float = Field(60.0, gt=0, description="a queued activation expires")
    resend_queued_after_s: float = Field(
        20.0,
        gt=0,
        description="an activation message expires in the broker after this long (no worker starts "
        "it later); a queued activation no worker started is then sent again (same task id), in "
        "case its message was lost; below AUTORECOVERY_ACTIVATION_QUEUED_TTL_S",
    )
    fence_push_backoff_max_s: float = Field(
        300.0,
        gt=0,
        description="an agent that did not answer a fence push is asked again after one tick "
        "interval, doubling up to this (the housekeeping's round-robin)",
    )
    resend_max: int = Field(2, ge=0, le=10, description="re-sends of one queued activation (0: never)")
    task_max_retries: int = Field(5, ge=0, le=20, description="retries of a task on transient errors")
    visibility_timeout_s: int = Field(3600, gt=0, description="Redis broker visibility timeout")

    cluster_cap: str = Field(
        "25%",
        pattern=r"^(\d+|\d+(\.\d+)?%)$",
        description="activations in flight per cluster: a number, or a share like '25%' (at least 1)",
    )
    fleet_cap: int = Field(50, ge=1, description="activations in flight across the fleet")
    activation_queue_room: int = Field(
        100,
        ge=1,
        description="activations queued and not started yet, at most: a tick admits no more, so "
        "that none waits in the broker past AUTORECOVERY_RESEND_QUEUED_AFTER_S (its message would "
        "expire and be re-sent); about the activation pool's processes x that delay / the seconds "
        "one activation's steps take, with a margin",
    )
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
        60.0,
        gt=0,
        description="a storage domain no up host reached for this long goes inactive; must be above "
        "AUTORECOVERY_TICK_INTERVAL_S + AUTORECOVERY_INIT_POLL_S",
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
    db_lock_timeout_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="a statement waits this long for a row or table lock, then fails and is "
        "retried as PostgreSQL unavailable (a holder stuck mid-transaction makes the others "
        "retry, not hang); 0: waits for ever",
    )

    beat_lock_timeout_s: float = Field(
        30.0,
        ge=3,
        description="beat's leader lock in Redis expires unless renewed; a second beat takes over "
        "within this long after the leader dies",
    )
    beat_heartbeat_file: Path | None = Field(
        None,
        description="the file this beat writes each loop and `autorecovery beat-alive` reads; unset: "
        "one per Redis (URL and database) in the temporary directory. Two beats on one machine and "
        "one Redis need one each",
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
        "",
        repr=False,
        description="'name:role:token' entries, comma-separated; role viewer, admin, or reporter "
        "bound to hosts as 'name:reporter:token:HOSTS' (HOSTS: host ids separated by a vertical "
        "bar; it pushes reports for those hosts only); placeholders and tokens under ~128 bits "
        "of estimated entropy are refused",
    )
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(8800, ge=0, le=65535, description="API port")
    api_max_connections: int = Field(
        1000,
        ge=1,
        description="API connections at once; beyond, requests get 503 (uvicorn limit_concurrency)",
    )
    api_header_timeout_s: float = Field(
        10.0, gt=0, description="a connection that has not sent a request's headers within this is closed"
    )
    api_body_timeout_s: float = Field(
        30.0, gt=0, description="a request whose body is not in within this after its head is closed"
    )
    api_max_header_bytes: int = Field(
        65536, ge=4096, description="largest request head (request line and headers) the API buffers"
    )
    api_keep_alive_s: int = Field(5, ge=1, description="idle keep-alive connections are closed after this")
    api_url: str = Field("http://127.0.0.1:8800", description="API URL for the CLI")
    token: SecretStr | None = Field(
        None, description="the CLI's bearer token for the API (one of AUTORECOVERY_API_TOKENS)"
    )
    cli_insecure: bool = Field(
        False,
        description="let the CLI send its token over plain http to a host other than loopback "
        "(like --insecure)",
    )
    api_dev_token: bool = Field(
        False,
        description="with no API tokens: serve with an admin token kept in <data_dir>/admin-token "
        "(loopback bind only); otherwise the API refuses to start",
    )

    failpoints: str = Field("", description="test only: comma-separated failpoints, e.g. 'stop_before_init'")

    _agent_token: SecretStr | None = PrivateAttr(None)
    _agent_keys: tuple[SecretStr | None, SecretStr | None] = PrivateAttr((None, None))

    @model_validator(mode="after")
    def _check_agent_files(self) -> Settings:
        if self.agent_token_file is not None:
            self._agent_token = SecretStr(_read_secret(self.agent_token_file, "agent_token_file"))
        keys = []
        for name in ("agent_key_file", "agent_previous_key_file"):
            path = getattr(self, name)
            key = None if path is None else _read_secret(path, name)
            reason = None if key is None else weak_token_reason(key, "agent key")
            if reason is not None:
                raise InvalidInput(_var(name), reason)
            keys.append(None if key is None else SecretStr(key))
        if keys[1] is not None and keys[0] is None:
            raise InvalidInput(_var("agent_previous_key_file"), "is set without AUTORECOVERY_AGENT_KEY_FILE")
        self._agent_keys = (keys[0], keys[1])
        try:
            self.plain_http_networks()
        except ValueError as exc:
            raise InvalidInput(_var("agent_plain_http_networks"), f"is not a list of CIDRs: {exc}") from None
        if self.agent_ca_file is not None and not self.agent_ca_file.is_file():
            raise InvalidInput(_var("agent_ca_file"), f"{self.agent_ca_file} is not a readable file")
        try:
            self.agent_url_policy()
        except ValueError as exc:
            raise InvalidInput(_var("agent_networks"), f"is not a list of CIDRs: {exc}") from None
        return self

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
                "must be below AUTORECOVERY_LOCK_TTL_S, so that a lock never expires under a running step",
            ),
            (
                "init_timeout_s",
                self.init_timeout_s < self.activation_soft_limit_s,
                "must be below AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S, so that a step's init call ends "
                "within its time limits",
            ),
            (
                "init_timeout_s",
                self.init_timeout_s <= self.init_max_s,
                "must not be above AUTORECOVERY_INIT_MAX_S (the longest an init may run)",
            ),
            (
                "init_poll_max_s",
                self.init_poll_max_s >= self.init_poll_s,
                "must not be below AUTORECOVERY_INIT_POLL_S",
            ),
            (
                "init_poll_s",
                self.init_poll_s < self.init_max_s,
                "must be below AUTORECOVERY_INIT_MAX_S (an init is asked about before its deadline)",
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
                # A domain is seen only by ticks, and a domain revived through a host that is not
                # up (every host lost it) stays active only this long without an up host reaching
                # it: the hosts come up on the round after its connect closes, one init poll
                # after it was sent and a tick interval later. Shorter, it flaps back to inactive
                # between the two rounds and no host ever sees all of its domains active.
                "sd_inactive_after_s",
                self.sd_inactive_after_s > self.tick_interval_s + self.init_poll_s,
                "must be above AUTORECOVERY_TICK_INTERVAL_S + AUTORECOVERY_INIT_POLL_S "
                f"({self.tick_interval_s:g} + {self.init_poll_s:g} s): a domain is seen only by ticks, "
                "and one revived through a host that is not up would go inactive again before the "
                "hosts it serves are brought back",
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
            return CapPolicy(
                cluster_share=float(text[:-1]) / 100.0,
                fleet_max=self.fleet_cap,
                queue_room=self.activation_queue_room,
            )
        return CapPolicy(
            cluster_max=int(text),
            cluster_share=None,
            fleet_max=self.fleet_cap,
            queue_room=self.activation_queue_room,
        )

    @property
    def agent_token(self) -> SecretStr | None:
        """The agent token read from AUTORECOVERY_AGENT_TOKEN_FILE at start, if set."""
        return self._agent_token

    def agent_credentials(self) -> AgentCredentials:
        """What the product sends agents: per-host tokens from the key, else the fleet token."""
        key, previous = self._agent_keys
        return AgentCredentials(
            key=key.get_secret_value().encode() if key else None,
            previous_key=previous.get_secret_value().encode() if previous else None,
            fleet_token=self._agent_token.get_secret_value() if self._agent_token else None,
        )

    def plain_http_networks(self) -> tuple[IPNetwork, ...]:
        """Networks where a credential may go over plain http (loopback always may)."""
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.agent_plain_http_networks.split(",")
            if part.strip()
        )

    def agent_url_policy(self) -> AgentUrlPolicy:
        """Where agents may be: the allow-list, and the product's own endpoints to refuse."""
        return AgentUrlPolicy.build(
            self.agent_networks.split(","),
            [
                endpoint(self.database_url, 5432),
                endpoint(self.redis_url, 6379),
                endpoint(self.broker_url, 5672 if (self.broker_url or "").startswith("amqp") else 6379),
                endpoint(self.api_url, 80),
                (self.api_host.lower(), self.api_port),
            ],
        )

    def beat_heartbeat_path(self) -> Path:
        """The heartbeat file of this beat: the one set, else one per Redis in the temp directory.

        The default is named after the Redis URL (its password left out), so that beats of two
        deployments on one machine never share a file; two beats of one deployment on one
        machine must each be given theirs (a container has its own temporary directory).
        """
        if self.beat_heartbeat_file is not None:
            return self.beat_heartbeat_file
        url = urlsplit(self.redis_url or self.broker_url or "")
        where = f"{url.scheme}://{url.hostname}:{url.port}{url.path}"
        digest = hashlib.sha256(where.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"autorecovery-beat-{digest}.heartbeat"

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
    def activation_message_ttl_s(self) -> float:
        """How long an activation message may wait in the broker; past it no worker starts it.

        With re-sends on it is the re-send delay: a message is re-sent only once it has expired,
        so that two messages of one activation are never both runnable (a deep queue is not
        re-sent into duplicate runs).
        """
        return self.resend_queued_after_s if self.resend_max > 0 else self.activation_queued_ttl_s

    @property
    def resend_after_sent_s(self) -> float:
        """A queued activation is re-sent this long after its last send: its message expired."""
        return self.resend_queued_after_s + MESSAGE_EXPIRY_MARGIN_S

    @property
    def resend_check_after_s(self) -> float:
        """A sent activation with no step for this long lost its check message: it is sent again.

        Its last check was due at most ``init_poll_max_s`` after its step, may have waited its
        message's life in the queue and run a step's hard time limit: past all that (and the
        clock-skew margin) no check of it runs or can start. The re-send takes the check token
        besides, so a late one would act no more.
        """
        return (
            max(self.init_poll_s, self.init_poll_max_s)
            + self.activation_message_ttl_s
            + self.activation_time_limit_s
            + MESSAGE_EXPIRY_MARGIN_S
        )

    @property
    def housekeeping_time_limit_s(self) -> float:
        """The housekeeping task's hard time limit, and the lease a run holds (no two at once)."""
        return self.tick_deadline_s + 10

    @property
    def reap_running_after_s(self) -> float:
        """How long a step may hold a record (``sending``, or ``sent`` past its deadline) before
        it is abandoned: its process is dead once its hard limit and its lock have expired."""
        return self.activation_time_limit_s + self.lock_ttl_s


def _var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _read_secret(path: Path, name: str) -> str:
    """A secret file's content, stripped; never echoed in an error.

    Raises:
        InvalidInput: naming the variable, when the file is missing, unreadable or empty.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(_var(name), f"cannot read {path}: {type(exc).__name__}") from None
    if not text:
        raise InvalidInput(_var(name), f"{path} is empty")
    return text


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
