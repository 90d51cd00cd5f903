"""One report schema: the msgspec struct; the API's OpenAPI schema is generated from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from api.app import create_app
from autorecovery.settings import Settings
from models.domain import Report
from models.report_bulk import MAX_BULK_REPORTS
from models.report_wire import REPORT_EXAMPLE, ReportWire, decode_report, report_schema
from tests.unit.test_api_errors import ADMIN, World
from tests.unit.test_api_hardening import TOKENS, report_body, world

__all__ = ["world"]  # the fixture
JSON = {"Content-Type": "application/json"}


def _openapi() -> dict[str, Any]:
    return create_app(Settings(api_tokens=TOKENS)).openapi()


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


def test_the_single_push_documents_the_struct() -> None:
    spec = _openapi()
    body = spec["paths"]["/api/v1/hosts/{host_id}/report"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == report_schema()


def test_the_bulk_push_judges_each_report_by_the_struct() -> None:
    spec = _openapi()
    body = spec["paths"]["/api/v1/reports"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    reports = _resolve(spec, body)["properties"]["reports"]
    # Any object is taken (a report that does not match is refused alone, in a 200), and the
    # schema each is judged by is the single push's, generated from the struct.
    items = reports["items"]
    assert items["type"] == "object" and "properties" not in items
    assert items["x-report-schema"] == report_schema()
    assert (reports["minItems"], reports["maxItems"]) == (1, MAX_BULK_REPORTS)


def test_the_bulk_push_decodes_each_report_with_the_struct(world: World, monkeypatch: Any) -> None:
    decoded: list[bytes] = []

    def spy(raw: bytes, *args: Any, **kwargs: Any) -> Report:
        decoded.append(raw)
        return decode_report(raw, *args, **kwargs)

    monkeypatch.setattr("autorecovery.services.intake.decode_report", spy)
    good, bad = report_body("h-1"), report_body("h-1", kvm=1)
    for body, expected in ((bad, ("refused", "reports[0].kvm")), (good, ("accepted", None))):
        answer = world.call("POST", "/api/v1/reports", json={"reports": [body]}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        assert [(r["status"], r["field"]) for r in answer.json()["results"]] == [expected]
    assert [msgspec.json.decode(raw) for raw in decoded] == [bad, good]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[]", "body"),
        (b"{", "body"),
        (b"{}", "reports"),
        (b'{"reports": []}', "reports"),
        (b'{"reports": {}}', "reports"),
        (b'{"reports": [{}], "dry_run": true}', "dry_run"),
        (b'{"reports": [{"host_id": "h-1"}, 5]}', "reports[1]"),  # not a report at all: nothing taken
        (b'{"reports": [ ["x"] ]}', "reports[0]"),
        (b'{"reports": ' + b"[" * 40 + b"]" * 40 + b"}", "body"),
    ],
)
def test_an_unusable_bulk_envelope_is_a_422_naming_the_field(world: World, body: bytes, field: str) -> None:
    before = world.events()
    answer = world.call("POST", "/api/v1/reports", content=body, headers={**ADMIN, **JSON})
    assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
    assert world.events() == before  # nothing half-written


def test_the_schema_is_the_structs_fields() -> None:
    schema = report_schema()
    fields = msgspec.structs.fields(ReportWire)
    assert set(schema["properties"]) == {f.name for f in fields}  # type: ignore[arg-type]
    assert set(schema["required"]) == {f.name for f in fields if f.required}  # type: ignore[arg-type]
    assert "$ref" not in str(schema)  # nested definitions are inlined: no dangling reference


def test_the_example_decodes() -> None:
    now = datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC)
    report = decode_report(msgspec.json.encode(REPORT_EXAMPLE), "h-0001", now=now, source="push")
    assert report.agent_reachable and report.networks == {"mgmt": True}
