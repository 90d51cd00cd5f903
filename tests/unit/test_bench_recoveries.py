"""The recovery bench's arithmetic: duplicates, re-deliveries, busy slots, recovery times, ticks."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench import recovery_stats as stats
from bench.recoveries_readme import render_recoveries, verdict
from bench.recovery_stats import TaskEvent
from bench.recovery_watch import period_s


def _received(uuid: str, at: float, activation_id: str | None, name: str = "autorecovery.step") -> TaskEvent:
    kwargs = f"{{'host_id': 'h-0001', 'activation_id': '{activation_id}'}}" if activation_id else "{}"
    return TaskEvent("task-received", uuid, at, name, kwargs)


def _run(uuid: str, start: float, end: float, ended: str = "task-succeeded") -> list[TaskEvent]:
    return [TaskEvent("task-started", uuid, start), TaskEvent(ended, uuid, end)]


def test_a_message_run_twice_is_a_duplicate_and_a_retry_is_not() -> None:
    events = [
        _received("a1", 0.0, "a1"),
        *_run("a1", 1.0, 1.5),
        # retried once by the task itself (a busy lock): one message, two runs, no duplicate
        _received("a2", 0.0, "a2"),
        *_run("a2", 2.0, 2.1, ended="task-retried"),
        _received("a2", 3.0, "a2"),
        *_run("a2", 4.0, 4.2),
        # re-sent under the same task id, and both copies ran
        _received("a3", 0.0, "a3"),
        *_run("a3", 5.0, 5.1),
        _received("a3", 6.0, "a3"),
        *_run("a3", 6.0, 6.3),
        # a follow-up step of activation a1 under its own task id
        _received("s1", 7.0, "a1"),
        *_run("s1", 7.0, 7.4, ended="task-failed"),
        # not an activation's task: ignored
        _received("t1", 0.0, None, name="autorecovery.housekeeping"),
        *_run("t1", 0.0, 9.0),
    ]
    found = stats.task_figures(reversed(events))  # order of arrival does not matter
    assert (found.messages, found.activations, found.runs) == (4, 3, 6)
    assert (found.duplicate_runs, found.extra_deliveries) == (1, 1)
    assert [round(s, 3) for s in found.run_s] == [0.5, 0.1, 0.2, 0.1, 0.3, 0.4]
    assert found.run_ms(0.5) == pytest.approx(200.0)
    # 1.6 s of runs in a 10 s window on 2 processes
    assert found.busy_share(2, 0.0, 10.0) == pytest.approx(1.6 / 20)


def test_a_run_still_going_at_the_end_is_not_counted_as_busy_and_intervals_are_clipped() -> None:
    events = [_received("a", 0.0, "a"), TaskEvent("task-started", "a", 1.0)]
    assert stats.task_figures(events).intervals == ()
    assert stats.busy_share([(0.0, 4.0), (8.0, 12.0)], 2, 2.0, 10.0) == pytest.approx(4.0 / 16)
    assert stats.busy_share([(0.0, 4.0)], 2, 5.0, 5.0) == 0.0


def test_celery_events_are_reduced_and_other_events_dropped() -> None:
    assert TaskEvent.from_celery({"type": "worker-heartbeat", "timestamp": 1.0}) is None
    assert TaskEvent.from_celery({"type": "task-started", "uuid": "x"}) is None
    event = TaskEvent.from_celery(
        {"type": "task-received", "uuid": "x", "timestamp": 2, "name": "n", "kwargs": {"activation_id": "x"}}
    )
    assert event == TaskEvent("task-received", "x", 2.0, "n", "{'activation_id': 'x'}")
    assert stats.activation_task_ids([event]) == {"x": "x"}
    quoted = TaskEvent("task-received", "y", 0.0, None, '{"activation_id": "act-7", "trigger": "auto"}')
    assert stats.activation_task_ids([quoted]) == {"y": "act-7"}


def test_inits_count_accepted_refused_and_repeated() -> None:
    calls: list[dict[str, Any]] = [
        {"host_id": "h-1", "activation_id": "a", "outcome": "ok"},
        {"host_id": "h-1", "activation_id": "a", "outcome": "busy"},
        {"host_id": "h-2", "activation_id": "b", "outcome": None},  # still running (hung)
        {"host_id": "h-2", "activation_id": "b", "outcome": "ok"},  # v1: the same init again
        {"host_id": "h-3", "activation_id": "c", "outcome": "failed"},
        {"host_id": "h-3", "activation_id": "d", "outcome": "ok"},
        {"host_id": "h-4", "activation_id": "e", "outcome": "stale_fence"},
    ]
    assert stats.init_figures(calls) == stats.InitFigures(
        accepted=5, refused=2, duplicate_inits=1, hosts_with_several=2
    )


def test_recovery_times_rate_and_hosts_left_behind() -> None:
    first_up = {"h-1": 12.0, "h-2": 14.0, "h-3": 20.0}
    done = stats.recovery(first_up, ["h-1", "h-2", "h-3"], cleared_at=10.0)
    assert (done.up, done.all_up_s, done.median_s, done.per_s) == (3, 10.0, 4.0, 0.3)
    partial = stats.recovery(first_up, ["h-1", "h-4"], cleared_at=10.0)
    assert (partial.hosts, partial.up, partial.all_up_s, partial.last_up_s) == (2, 1, None, 2.0)
    assert stats.recovery({}, ["h-1"], 0.0).per_s is None
    assert stats.ratio(30.0, 10.0) == 3.0
    assert stats.ratio(None, 10.0) is None and stats.ratio(3.0, 0.0) is None


def test_ticks_closed_skipped_and_the_longest_gap_in_the_window() -> None:
    summaries = [
        {"finished_at": 101.0},
        {"finished_at": 103.0, "skipped": "still running"},
        {"finished_at": 106.0},
        {"finished_at": 107.0},
        {"finished_at": 99.0},  # before the window
        {"finished_at": None},
    ]
    found = stats.tick_figures(summaries, 100.0, 110.0)
    assert (found.closed, found.skipped, found.longest_gap_s) == (3, 1, 5.0)
    assert stats.tick_figures([], 0.0, 1.0).longest_gap_s is None


def test_beat_entries_periods_in_any_form() -> None:
    from datetime import timedelta

    from celery.schedules import crontab, schedule

    assert period_s(2) == 2.0
    assert period_s(timedelta(seconds=3)) == 3.0
    assert period_s(schedule(run_every=4.0)) == 4.0
    assert period_s(crontab(minute="*")) is None


def _scenario(hosts: int, hung: int, all_up_s: float | None, duplicates: int = 0) -> dict[str, Any]:
    return {
        "hosts": hosts,
        "hung": hung,
        "recovery": {"hosts": hosts - hung, "up": hosts - hung - (0 if all_up_s else 5),
                     "all_up_s": all_up_s, "median_s": 5.0, "last_up_s": all_up_s or 9.0},
        "per_s": 90.0,
        "busy_share": 0.5,
        "cpu_share": 0.25,
        "activation_cpu_ms": 23.456,
        "tasks": {"messages": 10, "activations": 10, "runs": 10, "duplicate_runs": duplicates,
                  "extra_deliveries": 0, "run_ms_median": 20.0, "run_ms_p95": 30.0},
        "inits": {"accepted": 10, "refused": 0, "duplicate_inits": 0, "hosts_with_several": 0},
        "resends": 0,
        "activations": {"succeeded": 10},
        "ticks": {"closed": 5, "skipped": 0, "longest_gap_s": 2.1},
    }


def _results(base_s: float | None, hung_s: float | None, duplicates: int = 0) -> dict[str, Any]:
    return {
        "command": "python -m bench.recoveries", "cores": 2, "hosts": 1000, "processes": 2,
        "tick_interval_s": 2.0, "settings": {"FLEET_CAP": "1000"}, "goal_s": 12.0, "max_wait_s": 120.0,
        "baseline": _scenario(1000, 0, base_s, duplicates),
        "hung_agents": _scenario(1000, 100, hung_s),
        "baseline_same_hosts_s": 10.0,
        "hung_ratio": None if hung_s is None else hung_s / 10.0,
        "hung_ratio_at_least": 12.0 if hung_s is None else None,
        "baseline_same_hosts_median_s": 4.0,
        "hung_median_ratio": 1.25,
        "load_avg_start": 7.5,
        "load_avg_end": 8.0,
        "commit": "abc1234",
    }


def test_the_readme_says_whether_the_goal_was_met_and_the_hung_ratio() -> None:
    assert verdict(_results(11.0, 10.5)) == "met"
    assert verdict(_results(13.0, 10.5)) == "not met"
    assert verdict(_results(11.0, 10.5, duplicates=1)) == "not met"
    assert verdict(_results(None, 10.5)) == "not met"
    text = render_recoveries(_results(11.0, 10.5))
    assert "**1.05x** the baseline's time" in text and "**met** in this run" in text
    assert "noisy (load average 7.5 at the start, 8 at the end; code at commit `abc1234`):" in text
    late = render_recoveries(_results(11.0, None))
    assert "of the other 900 hosts 895 were up 120 s" in late and "more than 12.0x" in late
    assert "not all up after 120 s (895 up)" in late
    assert "was up after 5.0 s against 4.0 s: **1.25x**" in late
    cpu_row = next(line for line in text.splitlines() if "CPU per activation" in line)
    assert cpu_row.endswith("| 23.5 ms | 23.5 ms |")
    older = _results(11.0, 10.5)
    del older["baseline"]["activation_cpu_ms"]  # a results file written before the figure
    assert "| n/a | 23.5 ms |" in render_recoveries(older)


def test_the_worker_log_gives_each_task_names_share_of_the_slots() -> None:
    log = "\n".join(
        [
            "[2026-12-07 03:17:03,730: INFO/ForkPoolWorker-2] Task autorecovery.monitoring_batch"
            "[e0df393f-555d] succeeded in 1.5s: None",
            "[2026-12-07 03:17:04,000: INFO/ForkPoolWorker-1] Task autorecovery.init_vds_on_up"
            "[a1] succeeded in 0.25s: {'outcome': 'up'}",
            "[2026-12-07 03:17:04,100: WARNING/ForkPoolWorker-1] host h-0001: something",
            "[2026-12-07 03:17:05,000: INFO/MainProcess] Task autorecovery.monitoring_tick[t] received",
        ]
    )
    runs = stats.logged_runs(log)
    assert [(name, round(end - start, 3)) for name, start, end in runs] == [
        ("autorecovery.monitoring_batch", 1.5),
        ("autorecovery.init_vds_on_up", 0.25),
    ]
    start = runs[0][1]
    shares = stats.busy_by_name(runs, 2, start, start + 10)
    assert shares == {
        "autorecovery.init_vds_on_up": pytest.approx(0.0125),
        "autorecovery.monitoring_batch": pytest.approx(0.075),
    }


def test_the_bench_settings_pass_the_products_validator_with_defaults_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from autorecovery.settings import load_settings
    from bench.recoveries import settings, without_test_settings
    from tests.support.servers import TEST_SETTINGS

    for name in list(os.environ):
        if name.startswith("AUTORECOVERY_"):
            monkeypatch.delenv(name)
    chosen = settings(2.0, 1000)
    env = without_test_settings({**TEST_SETTINGS, **chosen, "PATH": "/bin"}, chosen)
    assert env["PATH"] == "/bin" and "AUTORECOVERY_ACTIVATION_QUEUED_TTL_S" not in env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    assert (loaded.tick_interval_s, loaded.fleet_cap, loaded.cluster_cap) == (2.0, 1000, "100%")
    assert loaded.activation_queued_ttl_s == 60.0  # the product's default, not the tests' 20 s
