"""Onboarding commands as subprocesses against the real API: add, import, delete; clusters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cli.ops import Exit
from tests.integration.api_fixtures import ApiServer, snapshot
from tests.integration.conftest import statuses
from tests.integration.test_cli import Cli, cli  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)

AGENT = "http://127.0.0.1:9/agents/{}"


def _cluster(cli: Cli, cluster_id: str = "c-1") -> None:  # noqa: F811
    done = cli("clusters", "add", cluster_id, "--network", "mgmt", "--storage-domain", "sd-1")
    assert done.code == Exit.OK, str(done)


def test_clusters_add_list_and_delete(cli: Cli, tmp_path: Path, deps: Any) -> None:  # noqa: F811
    _cluster(cli)
    spec = tmp_path / "c-2.json"
    spec.write_text(json.dumps({"id": "c-2", "required_networks": ["mgmt"], "min_version": "4.5"}))
    assert cli("clusters", "add", "--file", str(spec)).code == Exit.OK
    listed = cli("clusters", "list", "--json").json()
    assert [(c["id"], c["min_version"]) for c in listed] == [("c-1", "0"), ("c-2", "4.5")]
    bad = cli("clusters", "add", "c-3", "--network", "bad name")
    assert bad.code == Exit.USAGE and "required_networks" in bad.err

    assert cli("hosts", "add", "h-0001", "--cluster", "c-1", "--agent-url", AGENT.format(1)).code == Exit.OK
    held = cli("clusters", "delete", "c-1")
    assert held.code == Exit.CONFLICT and "still has hosts" in held.err, str(held)
    assert cli("hosts", "delete", "h-0001").code == Exit.OK
    assert cli("hosts", "delete", "h-0001").code == Exit.NOT_FOUND
    assert cli("clusters", "delete", "c-1").code == Exit.OK
    assert cli("clusters", "delete", "c-1").code == Exit.NOT_FOUND
    assert [c["id"] for c in cli("clusters", "list", "--json").json()] == ["c-2"]
    viewer = cli("clusters", "delete", "c-2", who="vic")
    assert viewer.code == Exit.AUTH


def test_hosts_add_with_adopt_and_a_taken_id(cli: Cli, deps: Any) -> None:  # noqa: F811
    _cluster(cli)
    added = cli(
        "hosts", "add", "h-0001", "--cluster", "c-1", "--agent-url", AGENT.format(1), "--adopt", "--json"
    )
    assert added.code == Exit.OK, str(added)
    assert added.json()["status"] == "unassigned"
    with deps.db.transaction() as conn:
        assert conn.execute("SELECT adopt FROM hosts WHERE id = 'h-0001'").fetchone()["adopt"] is True
    again = cli("hosts", "add", "h-0001", "--cluster", "c-1", "--agent-url", AGENT.format(1))
    assert again.code == Exit.CONFLICT, str(again)
    unknown = cli("hosts", "add", "h-0002", "--cluster", "c-9", "--agent-url", AGENT.format(2))
    assert unknown.code == Exit.USAGE and "c-9" in unknown.err


def test_import_lists_every_bad_line_and_writes_nothing(cli: Cli, tmp_path: Path, deps: Any) -> None:  # noqa: F811
    _cluster(cli)
    assert cli("hosts", "add", "h-0001", "--cluster", "c-1", "--agent-url", AGENT.format(1)).code == Exit.OK
    before = snapshot(deps)
    rows = [
        "id,cluster,agent_url,adopt",
        f"h-0002,c-1,{AGENT.format(2)},true",
        "h-0003,c-1,ftp://nowhere,false",  # line 3: not http(s)
        f"bad id,c-1,{AGENT.format(4)},false",  # line 4: id
        f"h-0005,c-1,{AGENT.format(5)},maybe",  # line 5: adopt
        f"h-0006,c-1,{AGENT.format(6)}",
    ]
    path = tmp_path / "hosts.csv"
    path.write_text("\n".join(rows) + "\n")
    refused = cli("hosts", "import", str(path))
    assert refused.code == Exit.USAGE, str(refused)
    for number, word in ((3, "agent_url"), (4, "id"), (5, "adopt")):
        assert f"hosts.csv:{number}: {word}" in refused.err, refused.err
    assert "nothing was registered" in refused.err
    assert snapshot(deps) == before

    # Lines that parse but that the API refuses: a taken id, an unknown cluster, a repeat.
    rows[2:5] = [
        f"h-0001,c-1,{AGENT.format(1)},",
        f"h-0007,c-9,{AGENT.format(7)},",
        f"h-0002,c-1,{AGENT.format(2)},",
    ]
    path.write_text("\n".join(rows) + "\n")
    refused = cli("hosts", "import", str(path))
    assert refused.code == Exit.USAGE, str(refused)
    assert "hosts.csv:3: id: host 'h-0001' is already registered" in refused.err, refused.err
    assert "hosts.csv:4: cluster: unknown cluster 'c-9'" in refused.err
    assert "hosts.csv:5: id: is listed twice" in refused.err
    assert snapshot(deps) == before

    del rows[2:5]
    path.write_text("\n".join(rows) + "\n")
    done = cli("hosts", "import", str(path), "--adopt")
    assert done.code == Exit.OK, str(done)
    assert "2 host(s) registered (2 adopted)" in done.out
    with deps.db.transaction() as conn:
        got = conn.execute("SELECT id, adopt, status FROM hosts ORDER BY id").fetchall()
    assert [(r["id"], r["adopt"], r["status"]) for r in got] == [
        ("h-0001", False, "unassigned"),
        ("h-0002", True, "unassigned"),  # the line's own adopt
        ("h-0006", True, "unassigned"),  # --adopt
    ]


def test_a_long_json_import_shows_progress(cli: Cli, tmp_path: Path, deps: Any) -> None:  # noqa: F811
    _cluster(cli)
    hosts = [{"id": f"h-{i:05d}", "cluster": "c-1", "agent_url": AGENT.format(i)} for i in range(2500)]
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps({"hosts": hosts}))
    done = cli("hosts", "import", str(path), timeout_s=180)
    assert done.code == Exit.OK, str(done)
    assert "registered 1000/2500" in done.err and "registered 2500/2500" in done.err
    assert len(statuses(deps)) == 2500


def test_the_token_never_goes_over_plain_http_beyond_loopback_unasked(cli: Cli, api: ApiServer) -> None:  # noqa: F811
    # 0.0.0.0 reaches this machine but is not a loopback address: what a remote URL looks like.
    remote = f"http://0.0.0.0:{urlsplit(api.base_url).port}"
    refused = cli("safety", "--api-url", remote)
    assert refused.code == Exit.USAGE and "refusing to send the token over plain http" in refused.err
    allowed = cli("safety", "--api-url", remote, "--insecure")
    assert allowed.code == Exit.OK, str(allowed)
    assert "warning: sending the token over plain http to 0.0.0.0" in allowed.err
    by_env = cli("safety", "--api-url", remote, AUTORECOVERY_CLI_INSECURE="1")
    assert by_env.code == Exit.OK and "warning" in by_env.err
