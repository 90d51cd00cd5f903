"""``hosts import`` and ``clusters add`` against a mock API: one pass lists every bad line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.ops import Exit
from cli.ops.onboarding import Line, check_line, read_lines
from models.agent_url import NO_CREDENTIALS
from tests.unit.test_cli_ops import URL, Api, clean_env, run  # noqa: F401 - clean_env is autouse

AGENT = "http://10.0.0.{}:8901"


def _taken_and_unknown(request: httpx.Request) -> tuple[int, dict[str, Any]]:
    """The API's dry run: h-0001 is registered, cluster c-9 is unknown."""
    sent = json.loads(request.content)
    errors = []
    for i, h in enumerate(sent["hosts"]):
        if h["id"] == "h-0001":
            errors.append({"index": i, "field": f"hosts[{i}].id", "code": "taken",
                           "message": "host 'h-0001' is already registered"})
        if h["cluster"] == "c-9":
            errors.append({"index": i, "field": f"hosts[{i}].cluster", "code": "unknown_cluster",
                           "message": "unknown cluster 'c-9'"})
    if errors:
        return 422, {"error": "invalid_input", "message": errors[0]["field"], "field": errors[0]["field"],
                     "errors": errors}
    created = [] if sent.get("dry_run") else [h["id"] for h in sent["hosts"]]
    return (200 if sent.get("dry_run") else 201), {"dry_run": bool(sent.get("dry_run")),
                                                    "hosts": len(sent["hosts"]), "created": created}


def _csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "hosts.csv"
    path.write_text("\n".join(["id,cluster,agent_url,adopt", *rows]) + "\n")
    return path


def test_local_and_server_side_problems_are_listed_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _csv(
        tmp_path,
        f"h-0001,c-1,{AGENT.format(1)},",      # line 2: taken (the API)
        "h-0003,c-1,ftp://nowhere,false",      # line 3: URL (here)
        f"h-0004,c-9,{AGENT.format(4)},",      # line 4: unknown cluster (the API)
        f"h-0005,c-1,{AGENT.format(5)},yes",   # line 5: adopt is not a boolean (here)
        f"h-0004,c-1,{AGENT.format(6)},",      # line 6: listed twice (here, naming line 4)
    )
    api = Api({("POST", "/api/v1/hosts/batch"): _taken_and_unknown})
    code, _, err = run(["hosts", "import", str(path), "--api-url", URL], api, capsys)
    assert code == Exit.USAGE, err
    for expected in (
        "hosts.csv:2: id: host 'h-0001' is already registered",
        "hosts.csv:3: agent_url:",
        "hosts.csv:4: cluster: unknown cluster 'c-9'",
        'hosts.csv:5: adopt: must be true or false, not "yes"',
        "hosts.csv:6: id: is listed twice (also line 4)",
        "5 bad line(s)",
        "--skip-existing",
    ):
        assert expected in err, err
    assert all(json.loads(r.content)["dry_run"] for r in api.requests)


def test_dry_run_checks_everything_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _csv(tmp_path, f"h-0002,c-1,{AGENT.format(2)},true", f"h-0003,c-1,{AGENT.format(3)},")
    api = Api({("POST", "/api/v1/hosts/batch"): _taken_and_unknown})
    code, out, err = run(["hosts", "import", str(path), "--dry-run", "--api-url", URL], api, capsys)
    assert code == Exit.OK, err
    assert "2 host(s) would be registered (1 adopted)" in out and "nothing was written" in out
    assert [json.loads(r.content)["dry_run"] for r in api.requests] == [True]


def test_skip_existing_finishes_a_partial_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, f"h-0001,c-1,{AGENT.format(1)},", f"h-0002,c-1,{AGENT.format(2)},")
    api = Api({("POST", "/api/v1/hosts/batch"): _taken_and_unknown})
    code, _, err = run(["hosts", "import", str(path), "--api-url", URL], api, capsys)
    assert code == Exit.USAGE and "hosts.csv:2: id: host 'h-0001' is already registered" in err

    api = Api({("POST", "/api/v1/hosts/batch"): _taken_and_unknown})
    code, out, err = run(["hosts", "import", str(path), "--skip-existing", "--json", "--api-url", URL],
                         api, capsys)
    assert code == Exit.OK, err
    assert json.loads(out) == {"dry_run": False, "hosts": 1, "skipped": ["h-0001"], "created": ["h-0002"]}
    written = json.loads(api.requests[-1].content)
    assert not written.get("dry_run") and [h["id"] for h in written["hosts"]] == ["h-0002"]


def test_json_entries_are_records_counted_from_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps([
        {"id": "h-0002", "cluster": "c-1", "agent_url": AGENT.format(2)},
        {"id": "h-0001", "cluster": "c-1", "agent_url": AGENT.format(1)},
        {"id": "h-0003", "cluster": "c-1", "agent_url": AGENT.format(3), "adopt": "yes"},
    ]))
    api = Api({("POST", "/api/v1/hosts/batch"): _taken_and_unknown})
    code, _, err = run(["hosts", "import", str(path), "--api-url", URL], api, capsys)
    assert code == Exit.USAGE
    assert "hosts.json: record 2: id: host 'h-0001' is already registered" in err, err
    assert 'hosts.json: record 3: adopt: must be true or false, not "yes"' in err
    assert "2 bad record(s)" in err and "counted from 1" in err


@pytest.mark.parametrize(("typed", "value", "ok"), [
    (True, True, True), (True, False, True), (True, "yes", False), (True, "true", False), (True, 1, False),
    (True, None, False), (False, "true", True), (False, "FALSE", True), (False, "yes", False),
    (False, "1", False), (False, "on", False),
])
def test_adopt_is_a_strict_boolean(typed: bool, value: object, ok: bool) -> None:
    data = {"id": "h-1", "cluster": "c-1", "agent_url": "http://a", "adopt": value}
    body, problems = check_line(Line(2, data, typed=typed), adopt=False)
    assert (body is not None) == ok, problems
    if not ok:
        assert problems[0].startswith("adopt: must be true or false")


def test_csv_numbers_a_quoted_multiline_row_by_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "hosts.csv"
    path.write_text('id,cluster,agent_url\n\nh-1,"c\n-1",http://a\nh-2,c-1,http://b\n')
    assert [line.number for line in read_lines(path)] == [3, 5]


@pytest.mark.parametrize(("status", "word"), [(201, "created"), (200, "replaced")])
def test_clusters_add_says_created_or_replaced(
    status: int, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"id": "c-1", "required_networks": [], "storage_domains": [], "min_version": "4.5",
            "cpu_flags": []}
    api = Api({("POST", "/api/v1/clusters"): (status, body)})
    code, out, _ = run(["clusters", "add", "c-1", "--min-version", "4.5", "--api-url", URL], api, capsys)
    assert code == Exit.OK and f"cluster c-1: {word}" in out, out


def test_an_agent_url_with_credentials_is_refused_with_where_they_go() -> None:
    data = {"id": "h-1", "cluster": "c-1", "agent_url": "http://admin:s3cret@10.0.0.9:9000"}
    body, problems = check_line(Line(2, data, typed=True), adopt=False)
    assert body is None
    assert problems == [f"agent_url: {NO_CREDENTIALS}"]
    assert "s3cret" not in problems[0] and "per-host token" in problems[0]
