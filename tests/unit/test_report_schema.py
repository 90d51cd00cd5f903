"""One report schema: the msgspec struct; the API's OpenAPI schema is generated from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from api.app import create_app
from autorecovery.settings import Settings
from models.report_wire import REPORT_EXAMPLE, ReportWire, decode_report, report_schema
from tests.unit.test_api_hardening import TOKENS


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
    items = _resolve(spec, body)["properties"]["reports"]["items"]
    assert items["type"] == "object" and report_schema()["title"] in items["description"]


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
