"""Decode a bulk push's body (``{"reports": [...]}``): the envelope at once, each report on its own.

The envelope is decoded by msgspec with every report left raw (``msgspec.Raw``), so one report
that does not match ``ReportWire`` is refused alone, naming its index and field, while the others
are taken. Each report is then decoded by ``decode_report``: the same definition as a single push
and a pulled report. The OpenAPI schema of the body is generated here from both structs.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from models.errors import BadReport, InvalidInput
from models.report_wire import REPORT_EXAMPLE, check_raw_depth, report_schema

#: Reports in one bulk push.
MAX_BULK_REPORTS = 1000


class BulkWire(msgspec.Struct, forbid_unknown_fields=True):
    """A bulk push on the wire: reports, each judged on its own against ``ReportWire``."""

    reports: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BULK_REPORTS)]


class _Addressed(msgspec.Struct):
    """What a bulk report is checked for before it is judged: the host it names."""

    host_id: Any = None


_BULK = msgspec.json.Decoder(BulkWire)
_ADDRESSED = msgspec.json.Decoder(_Addressed)


def decode_bulk(raw: bytes) -> list[bytes]:
    """Decode a bulk push's envelope; return each report's raw body, in the order sent.

    Raises:
        InvalidInput: ``body`` when it is not a JSON object (or nested too deeply), ``reports``
            when it is missing, empty, too long or not a list, ``reports[i]`` when an item is not
            an object; an unknown field naming it.
    """
    try:
        check_raw_depth(raw)
    except BadReport as exc:
        raise InvalidInput("body", exc.message) from None
    try:
        items = [bytes(item) for item in _BULK.decode(raw).reports]
    except msgspec.ValidationError as exc:
        raise _envelope_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput("body", f"is not valid JSON ({exc})") from None
    for index, item in enumerate(items):  # a raw item is its value's exact bytes
        if not item.startswith(b"{"):
            raise InvalidInput(f"reports[{index}]", "must be a JSON object (a report)")
    return items


def _envelope_error(text: str) -> InvalidInput:
    """Name the field of the envelope msgspec refused (its messages say ``- at `$.path```)."""
    if " - at " in text:
        what = text.split(" - at ")[0]
        return InvalidInput("reports", f"must be a list of 1 to {MAX_BULK_REPORTS} reports ({what})")
    if text.startswith("Object contains unknown field"):
        return InvalidInput(text.split("`")[1], "is not a field of a bulk push")
    if "missing required field" in text:
        return InvalidInput("reports", "is required")
    return InvalidInput("body", "must be a JSON object")


def addressed_host(raw: bytes) -> object:
    """The ``host_id`` a bulk report names, or None when it is not a JSON object."""
    try:
        return _ADDRESSED.decode(raw).host_id
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def bulk_schema() -> dict[str, Any]:
    """The JSON Schema of a bulk push, generated from ``BulkWire`` with ``ReportWire`` as items."""
    schema = msgspec.json.schema(BulkWire)
    schema.pop("$defs", None)
    if "$ref" in schema:  # msgspec names the struct and refers to it
        generated = msgspec.json.schema_components([BulkWire])[1]["BulkWire"]
        schema = dict(generated)
    # Any object is taken (a report that does not match is refused in the results, not the
    # whole push: a 200), so the items validate nothing; the schema each is judged by rides along.
    items = {
        "type": "object",
        "description": "a report, judged on its own against the single push's report schema "
        "(x-report-schema, generated from ReportWire); one that does not match is refused in the "
        "results, not the whole push",
        "x-report-schema": report_schema(),
    }
    schema["properties"]["reports"]["items"] = items
    schema["examples"] = [{"reports": [REPORT_EXAMPLE]}]
    return schema
