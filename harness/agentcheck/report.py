"""Conformance checks of an agent's report and of its refusal of unauthenticated calls."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from math import inf
from typing import Any

from harness.agentcheck.config import MAX_DEPTH, REPORT_MAX_AGE_S, CheckConfig
from harness.agentcheck.http import MAX_BODY_BYTES, AgentHttp, Reply
from harness.agentcheck.results import Results
from models.errors import BadReport
from models.fencing import MAX_FENCE
from models.report import parse_time
from models.report_wire import decode_report

WRONG_TOKEN = "agent-check-wrong-token"  # noqa: S105 - deliberately not the agent's token


def check_report(http: AgentHttp, cfg: CheckConfig, out: Results) -> dict[str, Any] | None:
    """Check ``GET /report``; return the report when it could be read, else None."""
    reply = http.call("GET", "/report")
    if not out.check("report.get", _get_problem(reply), f"HTTP 200, {reply.size} bytes of JSON"):
        return None
    body = reply.obj
    depth = _depth(body)
    out.check(
        "report.limits",
        f"nested {depth} levels deep, over {MAX_DEPTH}" if depth > MAX_DEPTH else None,
        f"{reply.size} bytes (at most {MAX_BODY_BYTES}), {depth} levels deep (at most {MAX_DEPTH})",
    )
    claimed = body.get("host_id")
    try:  # judged by the product's own report definition; the date is checked on its own below
        raw = json.dumps(body).encode()
        decode_report(raw, claimed if isinstance(claimed, str) else "", now=datetime.now(UTC), max_skew_s=inf)
    except BadReport as exc:
        out.failed("report.shape", f"the product would refuse it: {exc}")
    else:
        out.passed("report.shape", "every field of Appendix A present with its type")
    _check_host_id(claimed, cfg, out)
    _check_reported_at(body.get("reported_at"), cfg, out)
    _check_protocol(body, out)
    return body


def is_v2(report: Mapping[str, Any] | None) -> bool:
    """True when the report says the agent speaks protocol v2."""
    return report is not None and report.get("protocol") == 2


def check_auth(http: AgentHttp, cfg: CheckConfig, v2: bool, out: Results) -> None:
    """Check that calls without the token, or with a wrong one, are refused with 401."""
    if cfg.token is None:
        out.skipped("auth.missing", "no --token-file given")
        out.skipped("auth.wrong", "no --token-file given")
        return
    routes: list[tuple[str, str, dict[str, Any] | None]] = [("GET", "/report", None)]
    if v2:
        # Fence 0 never raises anything, so an agent that wrongly accepts it changes nothing.
        routes.append(("POST", "/fence", {"fence": 0}))
    if cfg.run_inits:
        routes.append(("POST", "/init", {"fence": 0, "activation_id": "agent-check-no-token"}))
    for name, kwargs in (("auth.missing", {"send_token": False}), ("auth.wrong", {"token": WRONG_TOKEN})):
        problems = []
        for method, path, body in routes:
            reply = http.call(method, path, body, **kwargs)
            if reply.status != 401 or reply.obj.get("error") != "unauthorized":
                problems.append(f"{method} {path} answered {reply.describe()}")
        paths = ", ".join(f"{m} {p}" for m, p, _ in routes)
        out.check(name, "; ".join(problems) or None, f'401 {{"error": "unauthorized"}} on {paths}')


def _get_problem(reply: Reply) -> str | None:
    if reply.error is not None:
        return f"no answer: {reply.error}"
    if 300 <= reply.status < 400:
        return f"HTTP {reply.status} redirect to {reply.location}: the product follows no redirect"
    if reply.status == 401:
        return f"HTTP 401: wrong or missing token (--token-file): {reply.describe()}"
    if reply.status != 200:
        return f"expected HTTP 200, got {reply.describe()}"
    if reply.size > MAX_BODY_BYTES:
        return f"longer than {MAX_BODY_BYTES} bytes: the product reads no more"
    if not isinstance(reply.body, dict):
        return "the body is not a JSON object"
    return None


def _check_host_id(claimed: object, cfg: CheckConfig, out: Results) -> None:
    if cfg.host_id is None:
        out.skipped("report.host_id", f"no --host-id given (the agent says {claimed!r})")
        return
    problem = None if claimed == cfg.host_id else f"is {claimed!r}, expected {cfg.host_id!r}"
    out.check("report.host_id", problem, f"{cfg.host_id!r} as registered")


def _check_reported_at(value: object, cfg: CheckConfig, out: Results) -> None:
    try:
        reported_at = parse_time(value)
    except BadReport as exc:
        out.failed("report.reported_at", str(exc))
        return
    age_s = (datetime.now(UTC) - reported_at).total_seconds()
    if -age_s > cfg.max_skew_s:
        out.failed("report.reported_at", f"{-age_s:.1f}s in the future (over {cfg.max_skew_s:g}s of skew)")
    elif age_s > REPORT_MAX_AGE_S:
        out.failed("report.reported_at", f"{age_s:.1f}s old: the product never acts on it (stale)")
    else:
        out.passed("report.reported_at", f"{age_s:+.1f}s from this machine's clock")


def _check_protocol(body: Mapping[str, Any], out: Results) -> None:
    if "protocol" not in body:
        out.passed("report.protocol", "no protocol field: a v1 agent (v2 checks are skipped)")
        out.skipped("report.init", "v1 agent")
        out.skipped("report.agent", "v1 agent")
        return
    protocol = body["protocol"]
    if protocol != 2 or isinstance(protocol, bool):
        out.failed("report.protocol", f"is {protocol!r}: give 2, or leave it out for v1")
        return
    out.passed("report.protocol", "2")
    if "init" not in body:
        out.failed("report.init", "missing: a v2 report carries init (null when no init runs)")
        return
    out.check("report.init", running_init_problem(body["init"]), json.dumps(body["init"]))
    out.check("report.agent", agent_state_problem(body.get("agent")), json.dumps(body.get("agent")))


def agent_state_problem(value: object) -> str | None:
    """Say what is wrong with a v2 report's ``agent`` field (Appendix B, agent state), or None."""
    if not isinstance(value, dict):
        return 'missing: a v2 report carries "agent": {"state_id", "highest_fence"}'
    state_id = value.get("state_id")
    if not isinstance(state_id, str) or not state_id:
        return "agent.state_id must be a non-empty string (created with the agent's state, then kept)"
    fence = value.get("highest_fence")
    if not isinstance(fence, int) or isinstance(fence, bool) or not 0 <= fence <= MAX_FENCE:
        return f"agent.highest_fence must be an integer 0 … {MAX_FENCE} (0: none accepted yet)"
    return None


def running_init_problem(value: object) -> str | None:
    """Say what is wrong with a report's ``init`` field (or a busy refusal's holder), or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return "must be null or an object"
    if not isinstance(value.get("activation_id"), str) or not value["activation_id"]:
        return "activation_id must be a non-empty string"
    fence = value.get("fence")
    if not isinstance(fence, int) or isinstance(fence, bool) or fence < 0:
        return "fence must be a non-negative integer"
    try:
        parse_time(value.get("started_at"), "started_at")
    except BadReport as exc:
        return str(exc)
    return None


def _depth(data: object) -> int:
    """How deeply a decoded JSON value nests (a scalar is 0), walked without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest
