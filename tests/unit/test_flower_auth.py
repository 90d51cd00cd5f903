"""``autorecovery check-flower-auth``: Flower's users refused when empty, malformed or weak."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from autorecovery.flower_auth import FLOWER_VAR, check_flower_auth
from autorecovery.secret_strength import weak_token_reason
from harness.up.prepare import flower_auth
from models.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]
STRONG = "0f3a9c1e7b24d58a6e0c93f1b7d2a4c8e51f09b3d6a7c2e48f1b0d9a3c5e7f21"  # openssl rand -hex 32


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("operator:CHANGE_ME", "at least 16"),  # the value the issue found working
        ("operator:CHANGE_ME_TO_A_LONG_RANDOM_PASSWORD", "placeholder"),
        ("operator:change-me-0123456789abcdefABCDEF", "placeholder"),
        ("operator:aaaaaaaaaaaaaaaaaaaaaaaa", "repeats itself"),
        ("operator:abababababababababababababababab", "repeats itself"),
        ("operator:Tr0ub4dor&3", "at least 16"),
        ("operator:abcdefghijklmnopqrst", "guessable parts"),  # a sequence
        ("operator:Password1Password1Password1", "guessable parts"),  # dictionary word, repeated
        ("operator:qwertyuiopasdfghjklzxcvbnm1234567890", "guessable parts"),  # keyboard walk
        ("operator:1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "guessable parts"),  # keyboard columns
        ("operator:correcthorsebatterystaplecorrecthorse", "guessable parts"),  # words
        ("operator:correct horse battery staple", "no spaces"),
        ("operator:", "at least 16"),
    ],
)
def test_a_weak_password_is_refused_naming_the_variable_and_the_user(raw: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_flower_auth(raw)
    assert refused.value.field == FLOWER_VAR
    assert words in refused.value.message and "user 'operator'" in refused.value.message
    password = raw.partition(":")[2]
    assert not password or password not in str(refused.value)


def test_a_user_given_twice_is_refused() -> None:
    other = "7d1e5a9c3b0f48e2a6c4d8b1f9e3a07c5b2d6f8e1a4c9b3d7f0e2a5c8b6d1f4e"
    with pytest.raises(InvalidInput) as refused:
        check_flower_auth(f"operator:{STRONG},operator:{other}")
    assert "entry 2" in refused.value.message and "given twice" in refused.value.message
    assert STRONG not in str(refused.value) and other not in str(refused.value)


def test_random_secrets_are_never_taken_for_guessable() -> None:
    for _ in range(30):  # 90 secrets: zxcvbn takes tens of ms on each
        for secret in (secrets.token_hex(32), secrets.token_hex(16), secrets.token_urlsafe(24)):
            assert weak_token_reason(secret) is None, secret


@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_value_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="is empty") as refused:
        check_flower_auth(raw)
    assert refused.value.field == FLOWER_VAR


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        (STRONG, 1),  # a password alone, no user: named by position, never quoted
        (f":{STRONG}", 1),  # no user
        (f" operator:{STRONG}", 1),  # Flower compares as written: " operator" is nobody's login
        (f"operator:{STRONG},", 2),  # a trailing comma is an empty entry
    ],
)
def test_a_malformed_value_is_refused_by_position(raw: str, position: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_flower_auth(raw)
    assert refused.value.field == FLOWER_VAR
    assert f"entry {position} is not user:password" in refused.value.message
    assert STRONG not in str(refused.value)


def test_one_weak_user_among_two_is_refused_by_name() -> None:
    weak = "hunter2hunter2hunter2"
    with pytest.raises(InvalidInput) as refused:
        check_flower_auth(f"alice:{STRONG},bob:{weak}")
    assert "entry 2 (user 'bob')" in refused.value.message
    assert weak not in str(refused.value) and STRONG not in str(refused.value)


def test_strong_passwords_pass_and_a_password_may_hold_a_colon() -> None:
    base64 = secrets.token_urlsafe(32)
    assert check_flower_auth(f"operator:{STRONG}") == ["operator"]
    assert check_flower_auth(f"alice:{STRONG},ops@example.org:{base64},carol:{STRONG[:32]}:{base64}") == [
        "alice", "ops@example.org", "carol"
    ]


def test_the_password_up_generates_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FLOWER_VAR, raising=False)
    for run in range(20):
        value, where = flower_auth(tmp_path / str(run))
        assert where is not None and check_flower_auth(value) == ["admin"]


def _check(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != FLOWER_VAR}
    env["PYTHONPATH"] = str(REPO)
    if value is not None:
        env[FLOWER_VAR] = value
    return subprocess.run(
        [sys.executable, "-m", "cli", "check-flower-auth"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_the_command_exits_2_on_a_weak_password_and_0_on_a_strong_one() -> None:
    unset, weak, strong = _check(None), _check("operator:CHANGE_ME"), _check(f"operator:{STRONG}")
    assert unset.returncode == 2 and "FLOWER_BASIC_AUTH: is empty" in unset.stderr
    assert weak.returncode == 2 and "FLOWER_BASIC_AUTH" in weak.stderr and "'operator'" in weak.stderr
    assert "CHANGE_ME" not in weak.stdout + weak.stderr
    assert strong.returncode == 0, strong.stderr
    assert "operator" in strong.stdout and STRONG not in strong.stdout + strong.stderr
