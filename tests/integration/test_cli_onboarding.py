"""Onboarding commands as subprocesses against the real API: add, import, delete; clusters."""

from __future__ import annotations

import json
import re
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
        "h-0003,c-1,ftp://nowhere,false",  # line 3: not http(s) (found here)
        f"bad id,c-1,{AGENT.format(4)},false",  # line 4: id (here)
        f"h-0005,c-1,{AGENT.format(5)},yes",  # line 5: adopt is true or false (here)
        f"h-0001,c-1,{AGENT.format(1)},",  # line 6: taken (the API's dry run)
        f"h-0007,c-9,{AGENT.format(7)},",  # line 7: unknown cluster (the API's dry run)
        f"h-0002,c-1,{AGENT.format(2)},",  # line 8: listed twice
        f"h-0009,c-1,{AGENT.format(9)}",
    ]
    path = tmp_path / "hosts.csv"
    path.write_text("\n".join(rows) + "\n")
    refused = cli("hosts", "import", str(path))  # one run names every bad line
    assert refused.code == Exit.USAGE, str(refused)
    for expected in (
        "hosts.csv:3: agent_url",
        "hosts.csv:4: id",
        'hosts.csv:5: adopt: must be true or false, not "yes"',
        "hosts.csv:6: id: host 'h-0001' is already registered",
        "hosts.csv:7: cluster: unknown cluster 'c-9'",
        "hosts.csv:8: id: is listed twice (also line 2)",
        "6 bad line(s)",
    ):
        assert expected in refused.err, refused.err
    assert "nothing was registered" in refused.err
    assert snapshot(deps) == before

    del rows[6:8], rows[2:5]  # keep h-0002, h-0001 (taken) and h-0009
    path.write_text("\n".join(rows) + "\n")
    dry = cli("hosts", "import", str(path), "--adopt", "--dry-run", "--skip-existing")
    assert dry.code == Exit.OK, str(dry)
    assert "2 host(s) would be registered (2 adopted); 1 already registered, skipped" in dry.out, dry.out
    assert snapshot(deps) == before
    assert cli("hosts", "import", str(path), "--adopt").code == Exit.USAGE  # h-0001 is taken
    done = cli("hosts", "import", str(path), "--adopt", "--skip-existing")
    assert done.code == Exit.OK, str(done)
    assert "2 host(s) registered (2 adopted); 1 already registered, skipped" in done.out
    with deps.db.transaction() as conn:
        got = conn.execute("SELECT id, adopt, status FROM hosts ORDER BY id").fetchall()
    assert [(r["id"], r["adopt"], r["status"]) for r in got] == [
        ("h-0001", False, "unassigned"),
        ("h-0002", True, "unassigned"),  # the line's own adopt
        ("h-0009", True, "unassigned"),  # --adopt
    ]


def test_clusters_add_checks_the_version_and_says_created_or_replaced(cli: Cli, deps: Any) -> None:  # noqa: F811
    refused = cli("clusters", "add", "c-1", "--min-version", "four")
    assert refused.code == Exit.USAGE and "min_version" in refused.err, str(refused)
    assert cli("clusters", "list", "--json").json() == []
    created = cli("clusters", "add", "c-1", "--min-version", "4.5")
    assert created.code == Exit.OK and "cluster c-1: created" in created.out, str(created)
    replaced = cli("clusters", "add", "c-1", "--min-version", "4.6")
    assert replaced.code == Exit.OK and "cluster c-1: replaced" in replaced.out, str(replaced)
    assert [c["min_version"] for c in cli("clusters", "list", "--json").json()] == ["4.6"]


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


def test_an_unknown_filter_id_is_an_error_not_an_empty_table(cli: Cli, deps: Any) -> None:  # noqa: F811
    _cluster(cli)
    assert cli("hosts", "list", "--cluster", "c-1").code == Exit.OK  # known, and empty: fine
    for argv in (("hosts", "list", "--cluster", "nope"), ("plan", "--cluster", "nope")):
        refused = cli(*argv)
        assert refused.code == Exit.NOT_FOUND, str(refused)
        assert "cluster 'nope' not found" in refused.err and "clusters list" in refused.err
        assert refused.out == ""


def test_watch_follow_and_the_cluster_line_against_the_real_api(cli: Cli, deps: Any) -> None:  # noqa: F811
    _cluster(cli)
    for i in (1, 2):
        assert cli("hosts", "add", f"h-000{i}", "--cluster", "c-1", "--agent-url", AGENT.format(i)).code == 0
    watched = cli("hosts", "list", "--watch", "0.2", "--watch-count", "2", "--json")
    assert watched.code == Exit.OK, str(watched)
    assert [len(json.loads(line)["hosts"]) for line in watched.out.splitlines()] == [2, 2]
    safety = cli("safety", "-w", "0.2", "--watch-count", "2")
    lines = re.findall(r"healthy 0 of 2, limit \d+", safety.out)
    assert safety.code == Exit.OK and len(lines) == 2, str(safety)
    followed = cli("audit", "--follow", "0.2", "--follow-count", "2", "--event", "host_registered", "--json")
    assert followed.code == Exit.OK, str(followed)
    assert [json.loads(line)["object_id"] for line in followed.out.splitlines()] == ["h-0001", "h-0002"]
    events = cli("audit", "--events")
    assert events.code == Exit.OK and "host_registered" in events.out
    assert cli("audit", "--event", "host_registred").code == Exit.USAGE
