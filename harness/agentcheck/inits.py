"""Conformance checks of ``/init``, its status route and ``/fence`` (they run inits on the host).

Fences: the checks read the agent's highest fence H and run their inits with F = H + 1 (or
``--fence-base``), one with F - 1 (refused), then raise the agent's fence to F + 1 with
``/fence``: they leave its highest fence at F + 1, two above where it was. Fences 0 and 2⁶³,
outside the bounds of Appendix B, must be refused with 422.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness.agentcheck.config import CheckConfig
from harness.agentcheck.http import AgentHttp, Reply
from harness.agentcheck.report import running_init_problem
from harness.agentcheck.results import Results
from models.errors import BadReport
from models.fencing import MAX_FENCE, MIN_FENCE
from models.report import parse_time

#: Concurrent inits sent when one init ends too fast to be caught running.
BURST = 6
_POLL_S = 0.2
INIT_CHECKS = ("init.run", "init.busy", "init.status", "init.idempotent", "init.status_unknown", "init.stale")
FENCE_CHECKS = ("fence.raise", "fence.never_lowers", "fence.bounds", "fence.enforced")


def new_activation_id(kind: str) -> str:
    """Return an activation id the checker uses, recognisable in the agent's logs."""
    return f"agent-check-{kind}-{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class InitRun:
    """The test init: its fence and id, and whether it was still running after the first answer."""

    fence: int
    activation_id: str
    was_running: bool


def read_highest(http: AgentHttp, v2: bool, out: Results, report: dict[str, Any] | None = None) -> int | None:
    """Learn the agent's highest fence without raising it: the report's ``agent.highest_fence``,
    else (an older v2 agent) ``POST /fence`` with 0."""
    if not v2:
        out.skipped("fence.read", "v1 agent: no /fence")
        return None
    agent = (report or {}).get("agent")
    known = _count(agent.get("highest_fence")) if isinstance(agent, dict) else None
    if known is not None:
        out.passed("fence.read", f"highest fence accepted so far (report's agent.highest_fence): {known}")
        return known
    reply = http.call("POST", "/fence", {"fence": 0})
    highest = _count(reply.obj.get("highest"))
    if reply.status != 200 or highest is None:
        out.failed("fence.read", f'expected 200 {{"highest": n}}, got {reply.describe()}')
        return None
    out.passed("fence.read", f"highest fence accepted so far: {highest}")
    return highest


def probe_highest_v1(http: AgentHttp, out: Results) -> int | None:
    """Learn a v1 agent's highest fence from a fence-0 init (refused unless the highest is 0)."""
    reply = http.call("POST", "/init", {"fence": 0, "activation_id": new_activation_id("probe")})
    highest = _count(reply.obj.get("highest"))
    if reply.status == 409 and reply.obj.get("error") == "stale_fence" and highest is not None:
        return highest
    if reply.status == 200 and isinstance(reply.obj.get("ok"), bool):
        return 0
    out.failed("init.run", f"a fence-0 init to learn the highest fence got {reply.describe()}")
    return None


def check_inits(http: AgentHttp, cfg: CheckConfig, v2: bool, base: int, out: Results) -> None:
    """Run the init checks with fences ``base`` and ``base - 1``."""
    run = _check_run(http, cfg, v2, base, out)
    if run is None:
        for name in INIT_CHECKS[1:]:
            out.skipped(name, "the test init did not run")
        return
    if v2:
        _check_busy(http, run, out)
        body = {"fence": run.fence, "activation_id": run.activation_id}
        early = http.call("POST", "/init", body, prefer_async=True) if run.was_running else None
        final = _check_status(http, cfg, run, out)
        _check_idempotent(http, run, early, final, out)
        reply = http.call("GET", f"/init/{new_activation_id('unknown')}")
        unknown = None if reply.status == 404 else f"expected 404, got {reply.describe()}"
        out.check(
            "init.status_unknown",
            unknown,
            "404 for an activation the agent never saw",
        )
    else:
        for name in ("init.busy", "init.status", "init.idempotent", "init.status_unknown"):
            out.skipped(name, "v1 agent")
    reply = http.call("POST", "/init", {"fence": base - 1, "activation_id": new_activation_id("stale")})
    highest = _count(reply.obj.get("highest"))
    problem = None
    if reply.status != 409 or reply.obj.get("error") != "stale_fence":
        problem = f"fence {base - 1} below {base}: expected 409 stale_fence, got {reply.describe()}"
    elif highest is None or highest < base:
        problem = f"highest is {reply.obj.get('highest')!r}, expected at least {base}"
    out.check("init.stale", problem, f"fence {base - 1} refused, highest {highest}")


def check_fence(http: AgentHttp, cfg: CheckConfig, base: int, out: Results) -> None:
    """Check that ``/fence`` raises to ``base + 1`` and never lowers, and that init obeys it."""
    target = base + 1
    raised = http.call("POST", "/fence", {"fence": target})
    highest = raised.obj.get("highest")
    if not out.check(
        "fence.raise",
        None if raised.status == 200 and highest == target else f"to {target}: got {raised.describe()}",
        f"raised to {target}",
    ):
        return
    # The lowest fence an agent takes is 1 (Appendix B): 0 and 2^63 are not fences at all.
    lowered = [http.call("POST", "/fence", {"fence": f}) for f in (base, MIN_FENCE)]
    wrong = [r.describe() for r in lowered if r.status != 200 or r.obj.get("highest") != target]
    out.check(
        "fence.never_lowers", "; ".join(wrong) or None, f"fences {base} and {MIN_FENCE} left it at {target}"
    )
    outside = [(f, http.call("POST", "/fence", {"fence": f})) for f in (0, MAX_FENCE + 1)]
    taken = [f"fence {f}: {r.describe()}" for f, r in outside if r.status != 422]
    out.check(
        "fence.bounds", "; ".join(taken) or None, f"fences 0 and 2^63 refused with 422 (1 … {MAX_FENCE})"
    )
    if not cfg.run_inits:
        out.skipped("fence.enforced", "--no-init")
        return
    reply = http.call("POST", "/init", {"fence": base, "activation_id": new_activation_id("fenced")})
    refused = reply.status == 409 and reply.obj.get("error") == "stale_fence"
    out.check(
        "fence.enforced",
        None
        if refused and reply.obj.get("highest") == target
        else f"init with fence {base}: {reply.describe()}",
        f"an init with fence {base} is refused once /fence raised it to {target}",
    )


def _check_run(http: AgentHttp, cfg: CheckConfig, v2: bool, fence: int, out: Results) -> InitRun | None:
    act = new_activation_id("init")
    reply = http.call("POST", "/init", {"fence": fence, "activation_id": act}, prefer_async=v2)
    holder = reply.obj.get("activation_id")
    if v2 and reply.status == 409 and reply.obj.get("error") == "busy" and isinstance(holder, str):
        # Another init runs (the operator's, or one an earlier check sent): wait for it, once.
        _wait_done(http, holder, cfg.init_wait_s)
        reply = http.call("POST", "/init", {"fence": fence, "activation_id": act}, prefer_async=v2)
    if v2 and reply.status == 202 and reply.obj.get("status") == "running":
        out.passed("init.run", f"fence {fence}: 202 running (Prefer: respond-async)")
        return InitRun(fence, act, was_running=True)
    problem = _result_problem(reply)
    if problem is not None:
        out.failed("init.run", f"fence {fence}: {problem}")
        return None
    out.passed("init.run", f"fence {fence}: 200 {reply.body}")
    return InitRun(fence, act, was_running=False)


def _check_busy(http: AgentHttp, run: InitRun, out: Results) -> None:
    if run.was_running:
        second_id = new_activation_id("busy")
        second = http.call(
            "POST", "/init", {"fence": run.fence, "activation_id": second_id}, prefer_async=True
        )
        if second.status not in (200, 202):
            why = f"refused while {run.activation_id} runs"
            out.check("init.busy", _busy_problem(second, run.activation_id), why)
            return
        overlap = _overlap(http, [run.activation_id, second_id])
        if overlap is not None:
            out.failed("init.busy", f"a second init was accepted: {overlap}")
            return
        # The first init had already ended: too fast to catch running; try a burst instead.
    _check_burst(http, run, out)


def _check_burst(http: AgentHttp, run: InitRun, out: Results) -> None:
    ids = [new_activation_id("burst") for _ in range(BURST)]

    def post(act: str) -> Reply:
        return http.call("POST", "/init", {"fence": run.fence, "activation_id": act}, prefer_async=True)

    with ThreadPoolExecutor(BURST) as pool:
        replies = list(pool.map(post, ids))
    accepted = [a for a, r in zip(ids, replies, strict=True) if r.status in (200, 202)]
    busy = [r for r in replies if r.status == 409]
    wrong = [p for r in busy if (p := _busy_problem(r, None)) is not None]
    wrong += [r.describe() for r in replies if r.status not in (200, 202, 409)]
    overlap = _overlap(http, accepted)
    if wrong or overlap:
        out.failed("init.busy", "; ".join(wrong + ([overlap] if overlap else []))[:400])
    elif busy:
        out.passed("init.busy", f"{len(busy)} of {BURST} concurrent inits refused busy")
    else:
        out.skipped("init.busy", "every init ended before the next arrived: make init slower to test busy")


def _busy_problem(reply: Reply, holder: str | None) -> str | None:
    body = reply.obj
    if reply.status != 409 or body.get("error") != "busy":
        return f"expected 409 busy, got {reply.describe()}"
    if holder is not None and body.get("activation_id") != holder:
        return f"busy names {body.get('activation_id')!r}, not the running {holder!r}"
    return running_init_problem({k: body.get(k) for k in ("activation_id", "fence", "started_at")})


def _overlap(http: AgentHttp, accepted: list[str]) -> str | None:
    spans = []
    for act in accepted:
        status = _wait_done(http, act, 30.0)
        if status is None:
            return f"no status for accepted init {act}"
        spans.append((parse_time(status["started_at"]), parse_time(status["ended_at"], "ended_at"), act))
    spans.sort()
    for (_, first_end, first), (second_start, _, second) in zip(spans, spans[1:], strict=False):
        if second_start < first_end:
            return f"inits {first} and {second} ran at the same time"
    return None


def _check_status(http: AgentHttp, cfg: CheckConfig, run: InitRun, out: Results) -> dict[str, Any] | None:
    path = f"/init/{run.activation_id}"
    first = http.call("GET", path)
    problem = _status_problem(first, run)
    final = _wait_done(http, run.activation_id, cfg.init_wait_s) if problem is None else None
    if problem is None and final is None:
        problem = f"still running (or unreadable) after {cfg.init_wait_s:g}s"
    seen = first.obj.get("status")
    ok = final.get("ok") if final else None
    out.check("init.status", problem, f"{seen} first, then done with ok={ok}")
    return final


def _status_problem(reply: Reply, run: InitRun) -> str | None:
    body = reply.obj
    if reply.status != 200:
        return f"expected 200, got {reply.describe()}"
    if body.get("activation_id") != run.activation_id or body.get("fence") != run.fence:
        return f"names {body.get('activation_id')!r} fence {body.get('fence')!r}"
    if body.get("status") not in ("running", "done"):
        return f"status is {body.get('status')!r}, expected running or done"
    try:
        parse_time(body.get("started_at"), "started_at")
        if body["status"] == "done":
            parse_time(body.get("ended_at"), "ended_at")
    except BadReport as exc:
        return str(exc)
    if body["status"] == "done" and not isinstance(body.get("ok"), bool):
        return "a done init must say ok: true or false"
    return None


def _wait_done(http: AgentHttp, act: str, wait_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while True:
        reply = http.call("GET", f"/init/{act}")
        if reply.status != 200:
            return None
        if reply.obj.get("status") == "done":
            return reply.obj
        if time.monotonic() > deadline:
            return None
        time.sleep(_POLL_S)


def _check_idempotent(
    http: AgentHttp, run: InitRun, early: Reply | None, final: dict[str, Any] | None, out: Results
) -> None:
    if final is None:
        out.skipped("init.idempotent", "the test init never ended")
        return
    again = http.call("POST", "/init", {"fence": run.fence, "activation_id": run.activation_id})
    after = http.call("GET", f"/init/{run.activation_id}").obj
    problem = None
    if early is not None and early.status != 202 and _result_problem(early) is not None:
        problem = f"a retry while it ran: expected 202 or its result, got {early.describe()}"
    problem = problem or _result_problem(again)
    if problem is None and again.obj.get("ok") != final.get("ok"):
        problem = f"answered {again.body}, but the init ended with ok={final.get('ok')}"
    if problem is None and after.get("started_at") != final.get("started_at"):
        problem = "the retry started a new init (started_at changed)"
    why = "the same (fence, activation_id) is the same init" + (", while running and after" if early else "")
    out.check("init.idempotent", problem, why)


def _result_problem(reply: Reply) -> str | None:
    body = reply.obj
    if reply.status != 200 or not isinstance(body.get("ok"), bool):
        return f'expected 200 {{"ok": ...}}, got {reply.describe()}'
    if body["ok"] is False and not isinstance(body.get("reason"), str):
        return "a failed init must give a reason"
    return None


def _count(value: object) -> int | None:
    """The value when it is a non-negative integer (a fence), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
