"""The local cron scheduler fires each daily job once when its UTC hour passes."""

from datetime import UTC, datetime, timedelta

from artemis_local.workers import CRONS, Cron


def test_due_only_when_the_hour_is_crossed() -> None:
    purge = Cron("tombstone_purge", 3, "x.json")
    day = datetime(2026, 11, 27, tzinfo=UTC)
    assert purge.due_between(day + timedelta(hours=2, minutes=59), day + timedelta(hours=3))
    assert not purge.due_between(day + timedelta(hours=3), day + timedelta(hours=3, seconds=30))
    assert not purge.due_between(day + timedelta(hours=1), day + timedelta(hours=2))
    # across midnight
    assert purge.due_between(day - timedelta(hours=1), day + timedelta(hours=3, minutes=1))


def test_the_crons_match_the_production_schedules() -> None:
    assert {(c.function, c.hour) for c in CRONS} == {("tombstone_purge", 3), ("drift_detect", 4)}
