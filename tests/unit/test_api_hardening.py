"""API hardening over ASGI with the in-memory store: tokens, roles, query strictness, texts, docs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.auth import Principal, Role, parse_tokens
from api.deps import Services
from api.probes import Cached
from api.server import QuietPushes, RedactQuery
from autorecovery.settings import Settings
from models.errors import InvalidInput
from tests.unit.test_api_errors import ADMIN, ALICE, VIC, VIEWER, World, shape

RITA = "rita-Hq3Zt8Vn2Wp6Xk9Jc4Ry"
REPORTER = {"Authorization": f"Bearer {RITA}"}
TOKENS = f"alice:admin:{ALICE},vic:viewer:{VIC},rita:reporter:{RITA}:h-1|h-7"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def report_body(host_id: str, **changes: Any) -> dict[str, Any]:
    """A clean pushed report (agent protocol v1) for cluster c-1."""
    body: dict[str, Any] = {
        "host_id": host_id,
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": True,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {"mgmt": True},
        "storage_domains": {},
        "vms_running": 0,
        "mem_free_mb": 100,
    }
    return body | changes


@pytest.fixture
def world() -> World:
    found = World()
    found.app = create_app(
        Settings(api_tokens=TOKENS),
        services=Services(found.container),
    )
    return found


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("CHANGE_ME_TO_A_LONG_RANDOM_TOKEN", "placeholder"),
        ("change-me-0123456789abcdefABCDEF", "placeholder"),
        ("aaaaaaaaaaaaaaaa", "repeats itself"),
        ("abababababababababababababababab", "repeats itself"),
        ("abcdefghijklmnopqrst", "guessable parts"),
        ("Password1Password1Password1", "guessable parts"),
        ("1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "guessable parts"),
    ],
)
def test_placeholder_and_weak_tokens_refuse_to_start(token: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        create_app(Settings(api_tokens=f"alice:admin:{token}"))
    assert caught.value.field == "AUTORECOVERY_API_TOKENS"
    assert words in caught.value.message
    assert token not in str(caught.value)


def test_the_example_tokens_shipped_in_deploy_are_refused() -> None:
    found = 0
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file():
            continue
        for match in re.finditer(r"AUTORECOVERY_API_TOKENS[=:]\s*(\S+)", path.read_text(errors="replace")):
            value = match.group(1).strip("\"'")
            if ":" not in value or value.startswith("$"):
                continue  # empty, or taken from the environment
            found += 1
            with pytest.raises(InvalidInput):
                parse_tokens(value)
    assert found >= 1, "no example token found in deploy/: this test checks nothing"


def test_a_reporter_is_bound_to_its_hosts() -> None:
    table = parse_tokens(f"agg:reporter:ab:{RITA}:h-1|h-2")  # a token may hold colons
    principal = table.authenticate(f"ab:{RITA}")
    assert principal == Principal("agg", Role.REPORTER, frozenset({"h-1", "h-2"}))
    assert principal.can_report("h-2") and not principal.can_report("h-3")
    assert not principal.can_read and not principal.can_write
    for bad in (f"agg:reporter:{RITA}", f"agg:reporter:{RITA}:", f"agg:reporter:{RITA}:h 1"):
        with pytest.raises(InvalidInput, match="reporter entry"):
            parse_tokens(bad)


def test_a_reporter_pushes_for_its_host_only(world: World) -> None:
    report = report_body("h-1")
    answer = world.call("POST", "/api/v1/hosts/h-1/report", json=report, headers=REPORTER)
    assert answer.status_code == 200, answer.text
    # Another host's report, a read, a write: 403 before the body is read.
    assert shape(world.call("POST", "/api/v1/hosts/h-2/report", content=b"{", headers=REPORTER))[:2] == (
        403,
        "forbidden",
    )
    assert world.call("GET", "/api/v1/hosts", headers=REPORTER).status_code == 403
    assert world.call("GET", "/metrics", headers=REPORTER).status_code == 403
    assert world.call("POST", "/api/v1/hosts/h-1/activate", headers=REPORTER).status_code == 403
    assert world.call("POST", "/api/v1/hosts/h-1/report", json=report, headers=VIEWER).status_code == 403


def test_bulk_push_answers_per_report(world: World) -> None:
    good = report_body("h-1")
    reports = [good, {**good, "host_id": "h-2"}, {**good, "host_id": "h-7"}, {**good, "kvm": "yes"}, {}]
    answer = world.call("POST", "/api/v1/reports", json={"reports": reports}, headers=REPORTER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["refused"], body["stored"]) == (1, 4, 1)
    got = [(r["status"], r["error"], r["field"]) for r in body["results"]]
    assert got == [
        ("accepted", None, None),
        ("refused", "forbidden", "reports[1].host_id"),
        ("refused", "not_found", "reports[2].host_id"),
        ("refused", "invalid_input", "reports[3].host_id"),
        ("refused", "invalid_input", "reports[4].host_id"),
    ]
    admin = world.call("POST", "/api/v1/reports", json={"reports": [{**good, "kvm": "yes"}]}, headers=ADMIN)
    assert [(r["error"], r["field"]) for r in admin.json()["results"]] == [("bad_report", "reports[0].kvm")]
    assert world.events()[0] == ("report_rejected", "alice", "kvm")


def test_tokens_in_the_query_string_are_refused(world: World) -> None:
    for name in ("token", "access_token", "API_KEY"):
        answer = world.call("GET", f"/api/v1/hosts?{name}={ALICE}", headers=ADMIN)
        assert shape(answer) == (400, "token_in_query", name)
        assert ALICE not in answer.text


def test_no_redirect_built_from_the_host_header(world: World) -> None:
    answer = world.call("GET", "/api/v1/hosts/", headers={**ADMIN, "host": "evil.example"})
    assert answer.status_code == 404
    assert "location" not in answer.headers


@pytest.mark.parametrize(
    ("query", "field"),
    [("wait_s=1_0", "wait_s"), ("wait_s=1e1", "wait_s"), ("wait_s=%2B1", "wait_s"), ("wait_s=inf", "wait_s")],
)
def test_query_numbers_are_plain_digits(world: World, query: str, field: str) -> None:
    answer = world.call("POST", f"/api/v1/hosts/h-1/activate?{query}", headers=ADMIN)
    assert shape(answer)[::2] == (422, field)
    assert world.sent == []


def test_query_integers_are_plain_digits(world: World) -> None:
    assert shape(world.call("GET", "/api/v1/hosts?limit=1_0", headers=VIEWER))[::2] == (422, "limit")
    assert shape(world.call("GET", "/api/v1/audit?before=0x10", headers=VIEWER))[::2] == (422, "before")
    assert world.call("GET", "/api/v1/hosts?limit=10", headers=VIEWER).status_code == 200


@pytest.mark.parametrize(
    "char", ["\u202e", "\u2028", "\u2029", "\u200f", "\u2066", "\x85", "\x9b", "\x1b", "\x00"]
)
def test_reason_texts_refuse_control_and_bidi_characters(world: World, char: str) -> None:
    answer = world.call(
        "POST", "/api/v1/hosts/h-1/maintenance", json={"reason": f"disk{char}swap"}, headers=ADMIN
    )
    assert shape(answer)[::2] == (422, "reason")
    answer = world.call("PUT", "/api/v1/pause", json={"reason": f"x{char}y"}, headers=ADMIN)
    assert shape(answer)[::2] == (422, "reason")
    ok = world.call("POST", "/api/v1/hosts/h-1/maintenance", json={"reason": "disque changé"}, headers=ADMIN)
    assert ok.status_code == 200


def test_health_answers_head_and_readyz_hides_details_from_the_anonymous(world: World) -> None:
    assert world.call("HEAD", "/healthz").status_code == 200
    assert world.call("GET", "/readyz").json() == {"status": "ready"}
    assert world.call("GET", "/readyz", headers=REPORTER).json() == {"status": "ready"}
    detailed = world.call("GET", "/readyz", headers=VIEWER).json()
    assert detailed["status"] == "ready" and "automatic_activation" in detailed


def test_docs_are_served_from_local_files(world: World) -> None:
    page = world.call("GET", "/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "/docs/static/swagger-ui-bundle.js" in page.text
    script = world.call("GET", "/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


def test_a_cached_probe_reaches_its_dependency_once_per_period() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        raise ConnectionError("down")

    probe = Cached(check, ttl_s=60)
    for _ in range(50):
        with pytest.raises(ConnectionError):
            probe()
    assert len(calls) == 1


def test_the_access_log_never_shows_a_query_string() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/v1/hosts?token=s3cret&limit=5", "1.1", 400), None,
    )  # fmt: skip
    assert RedactQuery().filter(record)
    assert "s3cret" not in record.getMessage() and "/api/v1/hosts?[query redacted]" in record.getMessage()


def test_the_access_log_leaves_out_accepted_single_pushes_only() -> None:
    def line(method: str, path: str, status: int) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5", method, path, "1.1", status), None,
        )  # fmt: skip

    quiet = QuietPushes()
    assert not quiet.filter(line("POST", "/api/v1/hosts/h-1/report", 200))
    assert not quiet.filter(line("POST", "/api/v1/hosts/h-1/report?x=1", 200))
    assert quiet.filter(line("POST", "/api/v1/hosts/h-1/report", 403))  # refused: logged
    assert quiet.filter(line("POST", "/api/v1/hosts/h-1/report", 503))
    assert quiet.filter(line("POST", "/api/v1/reports", 200))  # a bulk push: one per collector
    assert quiet.filter(line("POST", "/api/v1/hosts/h-1/activate", 202))
    assert quiet.filter(line("GET", "/api/v1/hosts/h-1/report", 200))
