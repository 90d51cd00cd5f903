"""The agent URL policy: what registration accepts and refuses (and the API's 422 naming agent_url)."""

from __future__ import annotations

import pytest

from models.agent_url import AgentUrlPolicy, endpoint, redact_url
from models.errors import InvalidInput

SERVICES = [
    endpoint("postgresql://postgres@127.0.0.1:5432/test", 5432),
    endpoint("redis://127.0.0.1:6379/0", 6379),
    endpoint("amqp://guest:guest@rabbit.internal//", 5672),
    ("127.0.0.1", 8800),
]
POLICY = AgentUrlPolicy.build([], SERVICES)

ACCEPTED = [
    "http://127.0.0.1:9000/agents/h-1",  # loopback: the simulator and the tests
    "http://localhost:9000",
    "https://hv-01.example.net:8443",
    "http://10.1.2.3:9000",
    "http://[2001:db8::1]:9000",
    "http://127.0.0.1:5433",  # not the configured PostgreSQL port
    "http://rabbit.internal:9000",
]
REFUSED = [
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://169.254.10.1:9000", "link-local"),
    ("http://[fe80::1]:9000", "link-local"),
    ("http://[fd00:ec2::254]/", "EC2 metadata"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://100.100.100.200/", "Alibaba"),
    ("http://metadata.google.internal/computeMetadata/v1", "cloud metadata"),
    ("http://Metadata.Google.Internal./", "cloud metadata"),
    ("http://metadata/", "cloud metadata"),
    ("ftp://10.0.0.1/report", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("http://127.0.0.1:5432", "own services"),
    ("http://localhost:6379", "own services"),
    ("http://0.0.0.0:9000", "not a host address"),
    ("http://rabbit.internal:5672", "own services"),
    ("http://127.0.0.1:8800", "own services"),
    ("http://admin:s3cret@10.0.0.1:9000", "must not carry credentials"),
    ("https://tok3n@hv-01.example.net:8443/", "per-host token"),
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted(url: str) -> None:
    POLICY.check_url(url)


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_refused_naming_agent_url(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        POLICY.check_url(url)
    assert info.value.field == "agent_url"
    assert why in info.value.message


def test_an_allow_list_admits_only_its_networks_and_never_link_local() -> None:
    policy = AgentUrlPolicy.build(["10.0.0.0/8", " 127.0.0.0/8"], [])
    policy.check_url("http://10.9.9.9:9000")
    policy.check_url("http://127.0.0.1:9000")
    with pytest.raises(InvalidInput, match="outside AUTORECOVERY_AGENT_NETWORKS"):
        policy.check_url("http://192.168.1.5:9000")
    with pytest.raises(InvalidInput, match="link-local"):
        AgentUrlPolicy.build(["0.0.0.0/0"], []).check_url("http://169.254.169.254/")
    policy.check_url("http://agents.example.net:9000")  # names are checked when resolved


def test_a_refused_url_with_credentials_neither_echoes_them_nor_fails_to_say_where_they_go() -> None:
    with pytest.raises(InvalidInput) as info:
        POLICY.check_url("http://admin:s3cret@10.0.0.1:9000")
    assert "s3cret" not in info.value.message and "admin" not in info.value.message
    assert "docs/agent.md" in info.value.message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:s3cret@10.0.0.1:9000/init", "http://***@10.0.0.1:9000/init"),
        ("https://tok3n@hv-01.example.net/", "https://***@hv-01.example.net/"),
        ("http://10.0.0.1:9000/init", "http://10.0.0.1:9000/init"),
    ],
)
def test_redact_url_removes_any_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
