"""Request bodies and query parameters: strict types, no unknown fields, each error names a field."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from api.errors import field_name
from api.schemas import (
    ActivateQuery,
    AuditQuery,
    AutorecoveryIn,
    ClusterIn,
    HostIn,
    HostQuery,
    MaintenanceIn,
)

HOST = {"id": "h-0001", "cluster": "c-1", "agent_url": "http://10.0.0.7:8900/agents/h-0001"}


def refused_field(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return field_name(caught.value.errors()[0]["loc"])


def test_host_in_accepts_a_registration_and_trims_the_url_slash() -> None:
    host = HostIn.model_validate({**HOST, "agent_url": "https://agent.example:8443/h-0001/"})
    assert host.agent_url == "https://agent.example:8443/h-0001"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "-leading-dash"}, "id"),
        ({"id": "h 1"}, "id"),
        ({"id": "h/1"}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": 1}, "id"),
        ({"cluster": None}, "cluster"),
        ({"agent_url": "ftp://a"}, "agent_url"),
        ({"agent_url": "http://"}, "agent_url"),
        ({"agent_url": "http://a b"}, "agent_url"),
        ({"agent_url": "http://user:pw@a"}, "agent_url"),
        ({"agent_url": "http://a:70000"}, "agent_url"),
        ({"agent_url": "http://a:0"}, "agent_url"),
        ({"agent_url": "http://a/?q=1"}, "agent_url"),
        ({"agent_url": "http://a/" + "x" * 2048}, "agent_url"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_host_in_refuses(changes: dict[str, Any], field: str) -> None:
    assert refused_field(HostIn, {**HOST, **changes}) == field


def test_cluster_in_defaults_and_refusals() -> None:
    cluster = ClusterIn.model_validate({"id": "c-1"})
    assert (cluster.required_networks, cluster.min_version) == ([], "0")
    assert refused_field(ClusterIn, {"id": "c-1", "cpu_flags": ["vmx", "vmx"]}) == "cpu_flags"
    assert refused_field(ClusterIn, {"id": "c-1", "cpu_flags": ["vmx", 3]}) == "cpu_flags[1]"
    assert refused_field(ClusterIn, {"id": "c-1", "required_networks": "mgmt"}) == "required_networks"
    assert refused_field(ClusterIn, {"id": "c-1", "storage_domains": ["sd"] * 300}) == "storage_domains"
    assert refused_field(ClusterIn, {"id": "c-1", "min_version": "4 .5"}) == "min_version"
    for version in ("four", "4.x", "v4.5", "4.5-rc1", "4..5", ".4"):
        assert refused_field(ClusterIn, {"id": "c-1", "min_version": version}) == "min_version", version
    for version in ("0", "4", "4.5", "4.10.2"):
        assert ClusterIn.model_validate({"id": "c-1", "min_version": version}).min_version == version
    assert refused_field(HostIn, {**HOST, "adopt": "yes"}) == "adopt"


def test_flags_and_texts_are_strict() -> None:
    assert AutorecoveryIn.model_validate({"enabled": False}).enabled is False
    for value in ("false", 0, None):
        assert refused_field(AutorecoveryIn, {"enabled": value}) == "enabled"
    assert MaintenanceIn.model_validate({}).reason is None
    for value in ("", "a\x00b", "tab\there", "x" * 501, 5):
        assert refused_field(MaintenanceIn, {"reason": value}) == "reason"


def test_queries_refuse_unknown_parameters_and_out_of_range_values() -> None:
    assert HostQuery.model_validate({"status": "up", "autorecovery": "false"}).autorecovery is False
    assert refused_field(HostQuery, {"stauts": "up"}) == "stauts"
    assert refused_field(HostQuery, {"status": "sleeping"}) == "status"
    assert refused_field(HostQuery, {"limit": "1001"}) == "limit"
    assert ActivateQuery.model_validate({"wait_s": "2.5"}).wait_s == 2.5
    for value in ("-1", "120.5", "nan", "inf", str(math.pi * 1e9)):
        assert refused_field(ActivateQuery, {"wait_s": value}) == "wait_s"
    assert refused_field(AuditQuery, {"since": "2026-01-01T00:00:00"}) == "since"
    for value in ("68023", "-1.5e-38", "2026-01-01", "yesterday"):  # no Unix times, no bare dates
        assert refused_field(AuditQuery, {"since": value}) == "since"
    assert AuditQuery.model_validate({"since": "2026-01-01T00:00:00Z"}).since is not None
    assert refused_field(AuditQuery, {"before": str(2**63)}) == "before"
