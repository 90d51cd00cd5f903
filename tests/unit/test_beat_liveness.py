"""Beat's liveness probe: the leader's own loop, or a standby while some beat leads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

import autorecovery.beat_liveness as beat
from cli.main import main

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("local_age", "shared_age", "alive"),
    [
        (5.0, 5.0, True),  # leading, looping
        (59.0, 59.0, True),
        (61.0, 61.0, False),  # leading, its loop hangs
        (None, 5.0, True),  # standing by while another leads
        (None, None, True),  # starting: nobody led yet
        (None, 89.0, True),  # the leader just died: the takeover has time
        (None, 91.0, False),  # no leader for long and this standby did not take over
    ],
)
def test_liveness_table(local_age: float | None, shared_age: float | None, alive: bool) -> None:
    why = beat.liveness(
        None if local_age is None else NOW - local_age,
        None if shared_age is None else NOW - shared_age,
        NOW,
        max_age_s=60.0,
        takeover_s=90.0,
    )
    assert (why is None) is alive, why


def test_the_probe_command_reads_this_process_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AUTORECOVERY_REDIS_URL", raising=False)
    heartbeat = tmp_path / "heartbeat"
    monkeypatch.setenv("AUTORECOVERY_BEAT_HEARTBEAT_FILE", str(heartbeat))
    assert main(["beat-alive"]) == 0 and "standing by" in capsys.readouterr().out
    heartbeat.write_text("1.0")  # a leader whose loop stopped long ago
    assert main(["beat-alive"]) == 1 and "its loop last ran" in capsys.readouterr().err


def test_two_beats_on_one_machine_each_probe_their_own_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from autorecovery.settings import Settings

    monkeypatch.setenv("AUTORECOVERY_REDIS_URL", "redis://127.0.0.1:9/0")  # importing workers builds an app
    from workers import make_app
    from workers.beat import HEARTBEAT_FILE_CONF

    monkeypatch.delenv("AUTORECOVERY_REDIS_URL")
    hung, looping = tmp_path / "beat-a.heartbeat", tmp_path / "beat-b.heartbeat"
    for path in (hung, looping):  # what each beat's scheduler is told to write
        app = make_app(Settings(redis_url="redis://127.0.0.1:9/0", beat_heartbeat_file=path))
        assert app.conf[HEARTBEAT_FILE_CONF] == str(path)
    hung.write_text("1.0")  # beat A's loop hangs
    looping.write_text(f"{time.time():.3f}")  # beat B loops: it must not make A look alive
    monkeypatch.setenv("AUTORECOVERY_BEAT_HEARTBEAT_FILE", str(hung))
    assert main(["beat-alive"]) == 1 and "its loop last ran" in capsys.readouterr().err
    monkeypatch.setenv("AUTORECOVERY_BEAT_HEARTBEAT_FILE", str(looping))
    assert main(["beat-alive"]) == 0 and "(leading)" in capsys.readouterr().out
    assert main(["beat-alive", "--heartbeat-file", str(hung)]) == 1  # the option names another
    capsys.readouterr()


def test_the_default_heartbeat_is_one_per_redis_and_never_the_shared_tmp_name() -> None:
    from autorecovery.settings import Settings

    first = Settings(redis_url="redis://:secret@r1:6379/0").beat_heartbeat_path()
    assert first == Settings(redis_url="redis://:other@r1:6379/0").beat_heartbeat_path()  # no secret in it
    assert first != Settings(redis_url="redis://r1:6379/1").beat_heartbeat_path()
    assert first != Settings(redis_url="redis://r2:6379/0").beat_heartbeat_path()
    assert first.name != "autorecovery-beat-heartbeat" and "secret" not in str(first)


def test_the_beat_deployment_probes_it() -> None:
    deployment = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "deploy/kubernetes/beat.yaml").read_text()
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["exec"]["command"] == ["autorecovery", "beat-alive"]
