"""API tokens: parsing names the variable and never the token; comparison looks at every token."""

from __future__ import annotations

import hmac
import stat
from pathlib import Path

import pytest

from api import auth
from api.app import create_app
from api.auth import Principal, Role, load_tokens, parse_tokens
from autorecovery.settings import Settings
from models.errors import InvalidInput

ALICE = "alice-7Rk2pQ9xVm4LsT8w"
VIC = "vic-N5hJ3cW8zKq6Yd2fBx7"
GOOD = f"alice:admin:{ALICE}, vic:viewer:{VIC}"


def test_parse_reads_names_roles_and_tokens() -> None:
    table = parse_tokens(GOOD + ",")
    assert table.names == ["alice", "vic"]
    assert table.authenticate(ALICE) == Principal("alice", Role.ADMIN)
    assert table.authenticate(VIC) == Principal("vic", Role.VIEWER)
    assert table.authenticate(VIC).can_write is False  # type: ignore[union-attr]
    assert table.authenticate("nobody-0123456789") is None
    assert table.authenticate("") is None


def test_a_token_may_contain_colons() -> None:
    assert parse_tokens("ci:admin:k7R:q2Z:9vXm4LsT8wN3hJ5c").authenticate("k7R:q2Z:9vXm4LsT8wN3hJ5c")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("alice:admin", "not name:role:token"),
        (f"alice:root:{ALICE}", "role must be viewer, admin or reporter"),
        (f"al ice:admin:{ALICE}", "the name must be"),
        (f":admin:{ALICE}", "the name must be"),
        ("alice:admin:short", "at least 16"),
        ("alice:admin:has a space in it!!", "at least 16"),
        (f"alice:admin:{ALICE},alice:viewer:{VIC}", "used twice"),
        (f"alice:admin:{ALICE},bob:viewer:{ALICE}", "used by an earlier entry"),
    ],
)
def test_bad_entries_name_the_variable_and_never_the_token(raw: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_tokens(raw)
    assert caught.value.field == "AUTORECOVERY_API_TOKENS"
    assert words in caught.value.message
    for secret in (ALICE, VIC, "short", "has a space in it!!"):
        assert secret not in str(caught.value)


def test_authenticate_compares_every_token_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    table = parse_tokens(f"a:admin:{ALICE},b:viewer:{VIC},c:viewer:third-G4tM9rX2bPe7Ln5v")
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return real(left, right)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert table.authenticate(ALICE) == Principal("a", Role.ADMIN)
    assert len(compared) == 3, "stopped at the first match"
    assert all(len(left) == len(right) == 32 for left, right in compared), "compares digests"
    compared.clear()
    assert table.authenticate("x") is None
    assert len(compared) == 3


def test_no_token_refuses_to_start_naming_the_variable() -> None:
    with pytest.raises(InvalidInput) as caught:
        create_app(Settings(api_tokens=""))
    assert caught.value.field == "AUTORECOVERY_API_TOKENS"
    assert "AUTORECOVERY_API_DEV_TOKEN" in caught.value.message


def test_dev_flag_keeps_an_admin_token_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(api_tokens="", api_dev_token=True, data_dir=tmp_path)
    table = load_tokens(settings)
    path = tmp_path / "admin-token"
    token = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert table.authenticate(token) == Principal("admin", Role.ADMIN)
    assert load_tokens(settings).authenticate(token) is not None, "reused on restart"


def test_dev_flag_is_refused_beyond_loopback(tmp_path: Path) -> None:
    settings = Settings(api_tokens="", api_dev_token=True, data_dir=tmp_path, api_host="0.0.0.0")  # noqa: S104
    with pytest.raises(InvalidInput) as caught:
        load_tokens(settings)
    assert caught.value.field == "AUTORECOVERY_API_DEV_TOKEN"
    assert not (tmp_path / "admin-token").exists()


def test_configured_tokens_win_over_the_dev_flag(tmp_path: Path) -> None:
    table = load_tokens(Settings(api_tokens=GOOD, api_dev_token=True, data_dir=tmp_path))
    assert table.names == ["alice", "vic"]
    assert not (tmp_path / "admin-token").exists()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104
        ("10.0.0.5", False),
        ("api.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback
