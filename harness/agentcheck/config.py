"""What ``autorecovery agent-check`` is asked to do."""

from __future__ import annotations

from dataclasses import dataclass

#: The product refuses reports nested deeper than this.
MAX_DEPTH = 32
#: The product refuses reports dated further ahead of its clock than this (its default).
MAX_SKEW_S = 30.0
#: The product never activates a host from a report older than this (its default).
REPORT_MAX_AGE_S = 30.0


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """The agent to check and how.

    Args:
        url: the agent's base URL (what the product registers as ``agent_url``).
        token: the agent's bearer token; None skips the authentication checks.
        host_id: the id the host is registered with; None skips the host id check.
        fence_checks: run the init and fence checks, which change the agent's state (its
            highest fence; inits run on the host): only before the host is registered. False
            (the default) checks the report and authentication only and changes nothing.
        run_inits: with ``fence_checks``, send inits (they run on the host); False skips them.
        fence_base: the lowest fence the checks use; None: one above the agent's highest.
        timeout_s: per-request timeout.
        init_wait_s: how long to wait for a test init to end.
        ca_file: CA bundle for an ``https://`` agent; None: the system's CAs.
        max_skew_s: how far ahead of this machine's clock a report may be dated.
    """

    url: str
    token: str | None = None
    host_id: str | None = None
    fence_checks: bool = False
    run_inits: bool = True
    fence_base: int | None = None
    timeout_s: float = 10.0
    init_wait_s: float = 120.0
    ca_file: str | None = None
    max_skew_s: float = MAX_SKEW_S
