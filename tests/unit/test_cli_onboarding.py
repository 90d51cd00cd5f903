"""Import files read and checked line by line; the token kept off plain http beyond loopback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli.ops.client import ApiFailure, Exit, resolve
from cli.ops.onboarding import Line, check_line, read_lines

TOKEN = "alice-7Rk2pQ9xVm4LsT8w"  # noqa: S105 - a test token


def test_csv_lines_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "hosts.csv"
    path.write_text('id,cluster,agent_url\nh-1,c-1,http://a:1\n\nh-2,c-1,"http://b:2"\nh-3,c-1,http://c,x\n')
    lines = read_lines(path)
    assert [(line.number, line.data.get("id")) for line in lines] == [(2, "h-1"), (4, "h-2"), (5, "h-3")]
    assert check_line(lines[2], False) == (None, ["must be an object with id, cluster and agent_url"])


def test_json_and_json_lines(tmp_path: Path) -> None:
    listed = tmp_path / "hosts.json"
    listed.write_text('{"hosts": [{"id": "h-1", "cluster": "c-1", "agent_url": "http://a"}, 7]}')
    assert [line.number for line in read_lines(listed)] == [1, 2]
    lines = tmp_path / "hosts.jsonl"
    lines.write_text('{"id": "h-1", "cluster": "c-1", "agent_url": "http://a"}\n\nnot json\n')
    assert [(line.number, "_" in line.data) for line in read_lines(lines)] == [(1, False), (3, True)]
    with pytest.raises(ApiFailure) as caught:
        read_lines(tmp_path / "hosts.txt")
    assert caught.value.exit_code == Exit.USAGE


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        ({"id": "h-1", "cluster": "c-1", "agent_url": "http://a:1"}, []),
        ({"id": "h 1", "cluster": "c-1", "agent_url": "http://a:1"}, ["id: must be"]),
        ({"id": "h-1", "cluster": "", "agent_url": "ftp://a"}, ["cluster: must be", "agent_url: must be"]),
        ({"id": "h-1", "cluster": "c-1", "agent_url": "http://a", "adopt": "maybe"}, ["adopt: must be"]),
        (
            {"id": "h-1", "cluster": "c-1", "agent_url": "http://a", "zone": "x"},
            ["zone: is not a known field"],
        ),
    ],
)
def test_check_line_names_every_problem(data: dict[str, str], problems: list[str]) -> None:
    body, found = check_line(Line(2, data), adopt=True)
    assert len(found) == len(problems) and all(f.startswith(p) for f, p in zip(found, problems, strict=True))
    assert (body is None) == bool(problems)
    if body is not None:
        assert body["adopt"] is True  # no column: the command's --adopt


def _args(url: str, insecure: bool = False) -> argparse.Namespace:
    return argparse.Namespace(api_url=url, token=TOKEN, insecure=insecure)


def test_the_token_stays_off_plain_http_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AUTORECOVERY_CLI_INSECURE", raising=False)
    for url in (
        "http://127.0.0.1:8800",
        "http://localhost:8800",
        "http://[::1]:8800",
        "https://api.example.net",
    ):
        assert resolve(_args(url)) == (url, TOKEN)
    assert capsys.readouterr().err == ""
    with pytest.raises(ApiFailure) as caught:
        resolve(_args("http://api.example.net"))
    assert caught.value.exit_code == Exit.USAGE and "--insecure" in (caught.value.hint or "")
    assert resolve(_args("http://api.example.net", insecure=True)) == ("http://api.example.net", TOKEN)
    monkeypatch.setenv("AUTORECOVERY_CLI_INSECURE", "1")
    assert resolve(_args("http://10.1.2.3:8800")) == ("http://10.1.2.3:8800", TOKEN)
    err = capsys.readouterr().err
    assert "plain http to api.example.net" in err and "plain http to 10.1.2.3" in err and TOKEN not in err
