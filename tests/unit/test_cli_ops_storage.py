"""``storage-domains …``, ``placement`` and ``vm-runs report`` against an ``httpx.MockTransport``."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest

from cli.main import build_parser
from cli.ops import Exit, attempt_spec
from cli.ops.placement import explain
from tests.unit.test_cli_ops import URL, Api, clean_env, run  # noqa: F401 - clean_env: autouse fixture

NOT_FOUND_SD = (
    404,
    {"error": "not_found", "message": "storage_domain 'sd-9' not found", "field": "storage_domain_id"},
)


def domain(sd_id: str = "sd-1", status: str = "inactive", **extra: Any) -> dict[str, Any]:
    base = {
        "id": sd_id,
        "status": status,
        "autorecovery": True,
        "last_seen_at": "2026-11-24T11:58:00+00:00",
        "status_changed_at": "2026-11-24T12:00:00+00:00",
        "detail": None if status == "active" else "no up host reached it since 11:58",
    }
    base.update(extra)
    return base


def detail(status: str = "inactive", activation: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**domain(status=status), "clusters": ["c-1", "c-2"], "activation": activation}


def sd_activation(state: str = "sending") -> dict[str, Any]:
    return {
        "id": "sda-1",
        "sd_id": "sd-1",
        "trigger": "manual",
        "actor": "alice",
        "state": state,
        "fence": 4,
        "outcome": None,
        "detail": None,
        "queued_at": "2026-11-24T12:00:00+00:00",
        "started_at": None,
        "ended_at": None,
    }


QUEUED = (202, {"task_id": "sda-1", "activation_id": "sda-1", "storage_domain_id": "sd-1", "state": "queued"})


# -- Parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "attempt"),
    [
        ("h-1:ok", {"host": "h-1", "ok": True, "error": None}),
        ("h-1:failed", {"host": "h-1", "ok": False, "error": None}),
        (
            "h-1:failed:qemu-kvm: could not open /dev/kvm",
            {"host": "h-1", "ok": False, "error": "qemu-kvm: could not open /dev/kvm"},
        ),
        ("h-1:failed:", {"host": "h-1", "ok": False, "error": None}),
    ],
)
def test_attempt_specs(text: str, attempt: dict[str, Any]) -> None:
    assert attempt_spec(text) == attempt


@pytest.mark.parametrize("text", ["h-1", "h-1:", ":ok", "h-1:good", "h-1:OK", "h-1:ok:but slow", ""])
def test_bad_attempt_specs(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        attempt_spec(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["storage-domains"],
        ["storage-domains", "show"],
        ["storage-domains", "autorecovery", "sd-1", "maybe"],
        ["storage-domains", "activate", "sd-1", "--wait", "--timeout", "0"],
        ["placement"],
        ["vm-runs"],
        ["vm-runs", "report", "--attempt", "h-1:ok"],
        ["vm-runs", "report", "--vm", "vm-1"],
        ["vm-runs", "report", "--vm", "vm-1", "--attempt"],
        ["vm-runs", "report", "--vm", "vm-1", "--attempt", "h-1:maybe"],
        ["audit", "--host", "h-1", "--storage-domain", "sd-1"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == Exit.USAGE


def test_attempts_keep_their_order_across_options() -> None:
    args = build_parser().parse_args(
        [
            "vm-runs",
            "report",
            "--vm",
            "vm-1",
            "--attempt",
            "h-1:failed",
            "h-2:failed:boom",
            "--attempt",
            "h-3:ok",
        ]
    )
    assert [a["host"] for a in args.attempts] == ["h-1", "h-2", "h-3"]


# -- Storage domains -------------------------------------------------------------------------


def test_list_shows_each_domain_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    body = {
        "storage_domains": [
            domain("sd-1"),
            domain("sd-2", "active", autorecovery=False),
            domain("sd-3", "maintenance", detail="array firmware"),
        ]
    }
    api = Api({("GET", "/api/v1/storage-domains"): (200, body)})
    code, out, _ = run(["storage-domains", "list", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert "sd-3" in out and "array firmware" in out and "off" in out
    assert "3 storage domain(s): 1 active, 1 inactive, 1 maintenance" in out
    code, out, _ = run(["storage-domains", "list", "--json", "--api-url", URL], api, capsys)
    assert json.loads(out) == body


def test_show_tells_the_clusters_and_the_activation(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/storage-domains/sd-1"): (200, detail(activation=sd_activation()))})
    code, out, _ = run(["storage-domains", "show", "sd-1", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert "c-1, c-2" in out and "sda-1 sending — manual by alice, fence 4" in out
    assert "no up host reached it" in out


def test_show_of_a_domain_in_maintenance_says_how_to_bring_it_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = Api({("GET", "/api/v1/storage-domains/sd-1"): (200, detail("maintenance"))})
    _, out, _ = run(["storage-domains", "show", "sd-1", "--api-url", URL], api, capsys)
    assert "none running" in out and "storage-domains activate sd-1" in out


def test_unknown_domain_exits_4_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/storage-domains/sd-9"): NOT_FOUND_SD})
    code, _, err = run(["storage-domains", "show", "sd-9", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and "autorecovery storage-domains list" in err


def test_domain_ids_are_escaped_in_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/storage-domains/nfs%3A%2Fexport"): NOT_FOUND_SD})
    code, _, _ = run(["storage-domains", "show", "nfs:/export", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND


def test_writes_send_their_bodies(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(
        {
            ("PUT", "/api/v1/storage-domains/sd-1/autorecovery"): lambda r: (
                200,
                {"storage_domain_id": "sd-1", "autorecovery": json.loads(r.content)["enabled"]},
            ),
            ("POST", "/api/v1/storage-domains/sd-1/maintenance"): (
                200,
                {"storage_domain_id": "sd-1", "status": "maintenance", "detail": "firmware"},
            ),
        }
    )
    code, out, _ = run(["storage-domains", "autorecovery", "sd-1", "off", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "autorecovery off" in out
    code, out, _ = run(["storage-domains", "autorecovery", "sd-1", "on", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "autorecovery on" in out
    code, out, _ = run(
        ["storage-domains", "maintenance", "sd-1", "--reason", "firmware", "--api-url", URL], api, capsys
    )
    assert code == Exit.OK and "in maintenance (firmware)" in out
    code, out, _ = run(["storage-domains", "maintenance", "sd-1", "--api-url", URL], api, capsys)
    assert [json.loads(r.content) for r in api.requests] == [
        {"enabled": False},
        {"enabled": True},
        {"reason": "firmware"},
        {},
    ]


def test_activate_queues_and_says_how_to_follow(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("POST", "/api/v1/storage-domains/sd-1/activate"): QUEUED})
    code, out, _ = run(["storage-domains", "activate", "sd-1", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert "activation sda-1 of storage domain sd-1 queued" in out and "storage-domains show sd-1" in out
    code, out, _ = run(["storage-domains", "activate", "sd-1", "--json", "--api-url", URL], api, capsys)
    assert json.loads(out) == QUEUED[1]


@pytest.mark.parametrize(
    ("body", "code", "hint"),
    [
        (
            {
                "error": "activation_in_flight",
                "message": "held",
                "field": None,
                "holder": {"id": "sda-0", "sd_id": "sd-1", "actor": "auto"},
            },
            Exit.CONFLICT,
            "autorecovery storage-domains show sd-1",
        ),
        (
            {"error": "conflict", "message": "storage domain sd-1 is already active", "field": None},
            Exit.CONFLICT,
            None,
        ),
    ],
)
def test_activate_conflicts_exit_5(
    body: dict[str, Any], code: Exit, hint: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    api = Api({("POST", "/api/v1/storage-domains/sd-1/activate"): (409, body)})
    got, out, err = run(["storage-domains", "activate", "sd-1", "--wait", "--api-url", URL], api, capsys)
    assert got == code and out == "" and body["message"] in err
    assert len(api.requests) == 1  # no waiting after a refusal
    if hint:
        assert hint in err


def _following(*states: str, end: str) -> Api:
    """An API whose domain shows the activation in ``states``, then none, with status ``end``."""
    answers = [detail(activation=sd_activation(s)) for s in states] + [detail(end)]

    def look(_: httpx.Request) -> tuple[int, dict[str, Any]]:
        return 200, answers.pop(0) if len(answers) > 1 else answers[0]

    return Api(
        {
            ("POST", "/api/v1/storage-domains/sd-1/activate"): QUEUED,
            ("GET", "/api/v1/storage-domains/sd-1"): look,
            ("GET", "/api/v1/audit"): (
                200,
                {
                    "entries": [
                        {
                            "id": 9,
                            "at": "2026-11-24T12:00:05+00:00",
                            "object_type": "storage_domain",
                            "object_id": "sd-1",
                            "event": "activation_failed",
                            "actor": "alice",
                            "reason": "failed",
                            "details": {
                                "activation_id": "sda-1",
                                "fence": 4,
                                "detail": "no host could connect it (tried: h-1)",
                            },
                        }
                    ],
                    "next_before": None,
                },
            ),
        }
    )


def test_wait_exits_0_when_the_domain_is_active(capsys: pytest.CaptureFixture[str]) -> None:
    api = _following("queued", "sending", end="active")
    code, out, err = run(["storage-domains", "activate", "sd-1", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "sd-1 is active" in out
    assert "queued" in err and "sending" in err and "done" in err


def test_wait_exits_1_with_the_reason_when_it_failed(capsys: pytest.CaptureFixture[str]) -> None:
    api = _following("sending", end="inactive")
    code, _, err = run(["storage-domains", "activate", "sd-1", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.FAILED
    assert "sd-1 is not active: activation failed (no host could connect it (tried: h-1))" in err
    assert "the domain is inactive" in err
    assert dict(api.requests[-1].url.params) == {
        "object_type": "storage_domain",
        "object_id": "sd-1",
        "event": "activation_failed",
        "limit": "20",
    }


def test_wait_exits_3_on_timeout_and_json_prints_both(capsys: pytest.CaptureFixture[str]) -> None:
    api = _following(*(["sending"] * 1000), end="active")
    code, out, err = run(
        ["storage-domains", "activate", "sd-1", "--wait", "--timeout", "0.05", "--json", "--api-url", URL],
        api,
        capsys,
    )
    assert code == Exit.TIMEOUT and "still sending" in err
    body = json.loads(out)
    assert body["activation"]["state"] == "sending" and body["storage_domain"]["id"] == "sd-1"


def test_timeout_without_wait_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({})
    code, _, err = run(
        ["storage-domains", "activate", "sd-1", "--timeout", "5", "--api-url", URL], api, capsys
    )
    assert code == Exit.USAGE and api.requests == [] and "--wait" in err


def test_audit_of_a_storage_domain(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/audit"): (200, {"entries": [], "next_before": None}),
               ("GET", "/api/v1/storage-domains/sd-1"): (200, {"id": "sd-1"})})
    run(["audit", "--storage-domain", "sd-1", "--api-url", URL], api, capsys)
    params = dict(api.requests[0].url.params)
    assert (params["object_type"], params["object_id"]) == ("storage_domain", "sd-1")


# -- Placement and VM runs -------------------------------------------------------------------


RANKING = {
    "cluster": "c-1",
    "hosts": [
        {
            "host_id": "h-2",
            "score": 13.0,
            "terms": {"free_memory": 20.0, "vms_running": -6.0, "recent_charges": 0.0},
            "vms_running": 6,
            "mem_free_mb": 20480,
            "recent_charges": 0,
        },
        {
            "host_id": "h-1",
            "score": 9.0,
            "terms": {"free_memory": 30.0, "vms_running": -1.0, "recent_charges": -20.0},
            "vms_running": 1,
            "mem_free_mb": 30720,
            "recent_charges": 1,
        },
    ],
}


def test_explain() -> None:
    assert explain({"free_memory": 29.25, "vms_running": -1.0, "recent_charges": -20.0}) == (
        "free_memory +29.25, vms_running -1, recent_charges -20"
    )


def test_placement_ranks_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/clusters/c-1/placement"): (200, RANKING)})
    code, out, _ = run(["placement", "c-1", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    lines = out.splitlines()
    h2 = next(i for i, line in enumerate(lines) if "h-2" in line)
    h1 = next(i for i, line in enumerate(lines) if "h-1" in line)
    assert h2 < h1
    assert "recent_charges -20" in lines[h1] and "30.0 GiB" in lines[h1]
    assert "2 up host(s) of c-1, best first" in out
    code, out, _ = run(["placement", "c-1", "--json", "--api-url", URL], api, capsys)
    assert json.loads(out) == RANKING


def test_placement_of_an_empty_or_unknown_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(
        {
            ("GET", "/api/v1/clusters/c-2/placement"): (200, {"cluster": "c-2", "hosts": []}),
            ("GET", "/api/v1/clusters/c-9/placement"): (
                404,
                {"error": "not_found", "message": "cluster 'c-9'", "field": "cluster_id"},
            ),
        }
    )
    code, out, _ = run(["placement", "c-2", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "no host of c-2 is up" in out
    code, _, err = run(["placement", "c-9", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and "autorecovery clusters list" in err


def test_report_sends_the_attempts_and_says_what_happened(capsys: pytest.CaptureFixture[str]) -> None:
    answer = {
        "vm_run": 12,
        "vm_id": "vm-7",
        "charged": {"h-1": 3},
        "errored": ["h-1"],
        "error_until": "2026-11-24T12:30:00+00:00",
    }
    api = Api({("POST", "/api/v1/vm-runs"): (201, answer)})
    code, out, _ = run(
        [
            "vm-runs",
            "report",
            "--vm",
            "vm-7",
            "--attempt",
            "h-1:failed:qemu: no kvm",
            "h-2:ok",
            "--api-url",
            URL,
        ],
        api,
        capsys,
    )
    assert code == Exit.OK
    assert json.loads(api.requests[0].content) == {
        "vm_id": "vm-7",
        "attempts": [
            {"host": "h-1", "ok": False, "error": "qemu: no kvm"},
            {"host": "h-2", "ok": True, "error": None},
        ],
    }
    assert "VM run 12 of vm-7 recorded" in out and "charged h-1: 3 charge(s)" in out
    assert "h-1 is now in error until 2026-11-24 12:30:00" in out
    code, out, _ = run(
        ["vm-runs", "report", "--vm", "vm-7", "--attempt", "h-2:ok", "--json", "--api-url", URL], api, capsys
    )
    assert json.loads(out) == answer


def test_report_that_charges_nobody(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(
        {
            ("POST", "/api/v1/vm-runs"): (
                201,
                {"vm_run": 1, "vm_id": "vm-1", "charged": {}, "errored": [], "error_until": None},
            )
        }
    )
    _, out, _ = run(
        ["vm-runs", "report", "--vm", "vm-1", "--attempt", "h-1:failed", "--api-url", URL], api, capsys
    )
    assert "no host charged" in out


def test_report_refused_for_an_unknown_host_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    body = {
        "error": "invalid_input",
        "message": "attempts[1].host: unknown host 'h-9'",
        "field": "attempts[1].host",
    }
    api = Api({("POST", "/api/v1/vm-runs"): (422, body)})
    code, out, err = run(
        ["vm-runs", "report", "--vm", "vm-1", "--attempt", "h-1:failed", "h-9:ok", "--api-url", URL],
        api,
        capsys,
    )
    assert code == Exit.USAGE and out == ""
    assert "unknown host 'h-9'" in err and "fix attempts[1].host" in err


def test_a_viewer_cannot_report(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(
        {("POST", "/api/v1/vm-runs"): (403, {"error": "forbidden", "message": "viewer", "field": None})}
    )
    code, _, err = run(
        ["vm-runs", "report", "--vm", "vm-1", "--attempt", "h-1:ok", "--api-url", URL], api, capsys
    )
    assert code == Exit.AUTH and "admin token" in err
