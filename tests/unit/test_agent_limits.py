"""The agent client against misbehaving agents on loopback (real sockets): each is its host's alone."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from autorecovery.adapters.agents import Target
from autorecovery.adapters.agents.http import HttpAgentClient
from models.agent_url import AgentUrlPolicy
from models.domain import Report
from models.errors import AgentUnavailable, InitOutcomeUnknown
from models.report import is_bad_report
from tests.support.misbehaving import MisbehavingAgents

#: kind -> (a bad report? else unreachable, what the detail says)
GARBAGE = {
    "deep": (True, "bad report: body: is nested deeper than 32 levels"),
    "huge": (True, "bad report: body: is over the 1048576-byte limit"),
    "bomb": (True, "bad report: body: inflates past the 1048576-byte limit"),
    "html": (True, "bad report: body: cannot be decoded as UTF-8 JSON"),
    "badutf8": (True, "bad report: body: cannot be decoded as UTF-8 JSON"),
    "longint": (True, "bad report: "),
    "wrongid": (True, "bad report: host_id: is 'someone-else', expected"),
    "future": (True, "bad report: reported_at: is "),
    "ahead": (True, "ahead of the collector's clock (limit 30s)"),
    "drip": (False, "no complete answer within"),
    "redirect": (False, "a redirect to http://127.0.0.1:9/h-redirect/report: redirects are not followed"),
}


@pytest.fixture(scope="module")
def agents() -> Iterator[MisbehavingAgents]:
    server = MisbehavingAgents().start()
    yield server
    server.close()


def client(**kwargs: object) -> HttpAgentClient:
    return HttpAgentClient(
        report_timeout_s=1.0,
        init_timeout_s=2.0,
        concurrency=20,
        retries=0,
        **kwargs,  # type: ignore[arg-type]
    )


def check(report: Report, kind: str) -> None:
    is_bad, detail = GARBAGE[kind]
    assert report.agent_reachable is False, kind
    assert is_bad_report(report) is is_bad, (kind, report.error)
    assert detail in (report.error or ""), (kind, report.error)


def test_every_kind_of_garbage_in_one_pull_is_its_own_hosts_observation(agents: MisbehavingAgents) -> None:
    targets = [Target(f"h-{kind}", agents.url(kind, f"h-{kind}")) for kind in GARBAGE]
    good = [Target(f"h-good{i}", agents.url("good", f"h-good{i}")) for i in range(5)]
    agent = client()
    try:
        reports = agent.pull_reports(targets + good, datetime.now(UTC))
    finally:
        agent.close()
    assert [r.host_id for r in reports] == [t.host_id for t in targets + good]
    for kind, report in zip(GARBAGE, reports, strict=False):
        check(report, kind)
    assert all(r.agent_reachable and r.protocol == 2 for r in reports[len(targets) :])


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_the_single_pull_has_the_same_limits(agents: MisbehavingAgents, kind: str) -> None:
    agent = client()
    try:
        report = agent.get_report(Target(f"h-{kind}", agents.url(kind, f"h-{kind}")), datetime.now(UTC))
    finally:
        agent.close()
    check(report, kind)


def test_the_token_is_sent_on_every_call_and_never_shown(agents: MisbehavingAgents) -> None:
    agent = client(token="s3cret-token")  # noqa: S106 - a test token
    target = Target("h-1", agents.url("good", "h-1"))
    agents.auth.clear()
    try:
        assert agent.pull_reports([target], datetime.now(UTC))[0].agent_reachable
        assert agent.get_report(target, datetime.now(UTC)).agent_reachable
        assert agent.init(target, 3, "act-1").ok
        assert agent.init_status(target, "act-1") is not None
        assert agent.raise_fence(target, 4) == 9
        assert agent.connect_storage_domain(target, "sd-1", 2, "act-2").ok
    finally:
        agent.close()
    assert [path.rsplit("/", 1)[-1] for path, _ in agents.auth] == [
        "report",
        "report",
        "init",
        "act-1",
        "fence",
        "connect",
    ]
    assert {header for _, header in agents.auth} == {"Bearer s3cret-token"}
    assert "s3cret" not in repr(agent)


def test_a_name_resolving_outside_the_allowed_networks_is_refused_at_call_time(
    agents: MisbehavingAgents,
) -> None:
    policy = AgentUrlPolicy.build(["10.0.0.0/8"], [])
    target = Target("h-1", f"http://localhost:{agents.port}/good/h-1")
    agents.auth.clear()
    agent = client(url_policy=policy)
    try:
        pulled = agent.pull_reports([target], datetime.now(UTC))[0]
        single = agent.get_report(target, datetime.now(UTC))
    finally:
        agent.close()
    for report in (pulled, single):
        assert report.agent_reachable is False
        assert "agent URL policy: 127.0.0.1 is outside AUTORECOVERY_AGENT_NETWORKS" in (report.error or "")
    assert agents.auth == []  # no request left


@pytest.fixture(scope="module")
def tls_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MisbehavingAgents, Path]]:
    """Agents over https with a certificate from a test CA; yields them and the CA bundle."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server = MisbehavingAgents(tls=context).start()
    yield server, bundle
    server.close()


def test_https_agents_are_verified_against_the_ca_bundle(tls_agents: tuple[MisbehavingAgents, Path]) -> None:
    server, bundle = tls_agents
    target = Target("h-1", server.url("good", "h-1"))
    trusted, untrusted = client(ca_file=bundle), client()
    try:
        assert trusted.pull_reports([target], datetime.now(UTC))[0].agent_reachable
        assert trusted.get_report(target, datetime.now(UTC)).agent_reachable
        assert trusted.init(target, 1, "act-1").ok
        refused = [
            untrusted.pull_reports([target], datetime.now(UTC))[0],
            untrusted.get_report(target, datetime.now(UTC)),
        ]
    finally:
        trusted.close()
        untrusted.close()
    for report in refused:
        assert report.agent_reachable is False and not is_bad_report(report)
        assert "TLS certificate is not trusted (certificate verify" in (report.error or ""), report.error


#: kinds whose answers are not JSON objects a v2 call can use (valid reports are not init answers)
UNUSABLE = ["deep", "huge", "bomb", "html", "badutf8", "longint", "drip", "redirect"]


@pytest.mark.parametrize("kind", UNUSABLE)
def test_v2_calls_have_the_same_limits(agents: MisbehavingAgents, kind: str) -> None:
    target = Target(f"h-{kind}", agents.url(kind, f"h-{kind}"))
    agent = client()
    try:
        with pytest.raises(InitOutcomeUnknown if kind == "drip" else AgentUnavailable) as init:
            agent.init(target, 1, "act-1")
        with pytest.raises(AgentUnavailable) as status:
            agent.init_status(target, "act-1")
        with pytest.raises(AgentUnavailable) as fence:
            agent.raise_fence(target, 2)
    finally:
        agent.close()
    expected = {"drip": "no complete answer within", "redirect": "HTTP 302", "deep": "nested deeper"}.get(
        kind, "body"
    )
    for info in (init, status, fence):
        assert expected in str(info.value), (kind, str(info.value))


def test_the_pull_runs_concurrently_up_to_its_limit(agents: MisbehavingAgents) -> None:
    targets = [Target(f"h-{i}", agents.url("slow", f"h-{i}")) for i in range(8)]
    agents.most_in_flight = 0
    agent = HttpAgentClient(report_timeout_s=5.0, init_timeout_s=5.0, concurrency=3, retries=0)
    try:
        reports = agent.pull_reports(targets, datetime.now(UTC))
    finally:
        agent.close()
    assert all(r.agent_reachable for r in reports)
    assert agents.most_in_flight == 3  # one slow agent costs one wait, not one per host
