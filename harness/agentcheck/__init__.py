"""``autorecovery agent-check``: a conformance test of a host agent (protocol v2, or v1).

It reads the report and checks authentication, changing nothing on the agent. With
``fence_checks`` (``--fence-checks``: before the host is registered) it also runs a few inits
on the host and raises the agent's highest fence by two: see ``harness.agentcheck.inits``.
"""

from __future__ import annotations

from typing import Any

from harness.agentcheck.config import CheckConfig
from harness.agentcheck.http import AgentHttp
from harness.agentcheck.inits import (
    FENCE_CHECKS,
    INIT_CHECKS,
    check_fence,
    check_inits,
    probe_highest_v1,
    read_highest,
)
from harness.agentcheck.report import check_auth, check_report, is_v2
from harness.agentcheck.results import Result, Results, Verdict

#: Why the state-changing checks are skipped by default: a registered host's next activation
#: would otherwise meet a fence the product never issued (agent_fence_ahead).
READ_ONLY = "changes the agent's state: run with --fence-checks, before the host is registered"

__all__ = ["CheckConfig", "Result", "Results", "Verdict", "run_checks"]


def run_checks(cfg: CheckConfig) -> tuple[Results, list[str]]:
    """Run every check against one agent; return the results and notes on what was changed."""
    out = Results()
    notes: list[str] = []
    verify: str | bool = cfg.ca_file if cfg.ca_file else True
    http = AgentHttp(cfg.url, cfg.token, cfg.timeout_s, verify)
    try:
        report = check_report(http, cfg, out)
        if report is None:
            for name in ("auth.missing", "auth.wrong", "fence.read", *INIT_CHECKS, *FENCE_CHECKS):
                out.skipped(name, "no usable report")
            return out, notes
        v2 = is_v2(report)
        check_auth(http, cfg, v2, out)
        if not cfg.fence_checks:
            for name in ("fence.read", *INIT_CHECKS, *FENCE_CHECKS):
                out.skipped(name, READ_ONLY)
            notes.append("nothing (read-only checks; --fence-checks runs the init and fence checks)")
            return out, notes
        _check_calls(http, cfg, v2, out, notes, report)
    finally:
        http.close()
    return out, notes


def _check_calls(
    http: AgentHttp, cfg: CheckConfig, v2: bool, out: Results, notes: list[str], report: dict[str, Any]
) -> None:
    highest = read_highest(http, v2, out, report)
    if highest is None and not v2 and cfg.run_inits:
        highest = probe_highest_v1(http, out)
    if highest is None:
        reason = "--no-init" if not cfg.run_inits else "the agent's highest fence is unknown"
        for name in (*INIT_CHECKS, *FENCE_CHECKS):
            if not any(r.name == name for r in out.items):
                out.skipped(name, reason if v2 or name in INIT_CHECKS else "v1 agent")
        return
    base = max(cfg.fence_base or 0, highest + 1)
    if cfg.run_inits:
        notes.append(f"runs inits on the host with fence {base} (the agent's highest was {highest})")
        check_inits(http, cfg, v2, base, out)
    else:
        for name in INIT_CHECKS:
            out.skipped(name, "--no-init")
    if v2:
        notes.append(f"raises the agent's highest fence to {base + 1} with /fence")
        check_fence(http, cfg, base, out)
    else:
        for name in FENCE_CHECKS:
            out.skipped(name, "v1 agent: no /fence")
