"""The pure decisions of scheduled backups: which kind of PostgreSQL backup to take (full when
there is none or the newest full one is a week old, else differential; an explicit kind wins)
and whether a cron schedule (UTC) is due, at fixed epoch timestamps."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator

import pytest

from shipyard.data.backups import FULL_EVERY_S, backup_kind, due
from shipyard.data.engines import BackupEntry

DAY = 86400.0


def utc(text: str) -> float:
    """'2024-03-10 03:00:30' (UTC) -> epoch seconds."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


def test_utc_helper() -> None:
    assert utc("2024-03-10 03:00:00") == 1_710_039_600.0


def entry(kind: str, finished_at: float, started_at: float | None = None) -> BackupEntry:
    start = finished_at - 60 if started_at is None else started_at
    return BackupEntry(f"{kind}-{finished_at:.0f}", kind, start, finished_at, 1, 1, ("local",))


# --- backup_kind ----------------------------------------------------------------------------

NOW = utc("2024-03-10 03:00:00")


@pytest.mark.parametrize(
    ("entries", "kind"),
    [
        ([], "full"),
        ([entry("full", NOW - DAY)], "diff"),
        ([entry("full", NOW - 7 * DAY + 1)], "diff"),
        ([entry("full", NOW - 7 * DAY)], "full"),  # exactly a week: full
        ([entry("full", NOW - 30 * DAY)], "full"),
        # only full backups count: a recent diff on an old full is not a base
        ([entry("full", NOW - 8 * DAY), entry("diff", NOW - DAY)], "full"),
        ([entry("diff", NOW - DAY), entry("incr", NOW - 60)], "full"),
        # the newest full one counts, in whatever order they are listed
        ([entry("full", NOW - DAY), entry("full", NOW - 20 * DAY)], "diff"),
        ([entry("full", NOW - 20 * DAY), entry("full", NOW - DAY)], "diff"),
        # its end counts: begun 8 days ago, finished 6 days ago
        ([entry("full", NOW - 6 * DAY, started_at=NOW - 8 * DAY)], "diff"),
    ],
)
def test_backup_kind(entries: list[BackupEntry], kind: str) -> None:
    assert backup_kind(entries, NOW) == kind


@pytest.mark.parametrize("wanted", ["full", "diff", "incr"])
@pytest.mark.parametrize(
    "entries",
    [[], [entry("full", NOW - DAY)], [entry("full", NOW - 9 * DAY)]],
)
def test_an_explicit_kind_wins(entries: list[BackupEntry], wanted: str) -> None:
    assert backup_kind(entries, NOW, wanted) == wanted


def test_no_explicit_kind_is_the_default() -> None:
    assert backup_kind([entry("full", NOW - DAY)], NOW, None) == "diff"
    assert backup_kind([entry("full", NOW - DAY)], NOW, "") == "diff"


def test_a_full_backup_every_week() -> None:
    assert FULL_EVERY_S == 7 * DAY


# --- due ------------------------------------------------------------------------------------

DAILY = "0 3 * * *"
YESTERDAY_3AM = utc("2024-03-09 03:00:00")


@pytest.mark.parametrize(
    ("schedule", "last", "now", "expected"),
    [
        # ran at 03:00 yesterday: due again from 03:00 today
        (DAILY, YESTERDAY_3AM, utc("2024-03-10 02:59:00"), False),
        (DAILY, YESTERDAY_3AM, utc("2024-03-10 02:59:59"), False),
        (DAILY, YESTERDAY_3AM, utc("2024-03-10 03:00:00"), True),
        (DAILY, YESTERDAY_3AM, utc("2024-03-10 03:00:30"), True),
        (DAILY, YESTERDAY_3AM, utc("2024-03-12 12:00:00"), True),  # missed days: due once
        # a run at (or just after) the fire time covers that fire time
        (DAILY, utc("2024-03-10 03:00:00"), utc("2024-03-10 03:00:30"), False),
        (DAILY, utc("2024-03-10 03:00:00") + 0.5, utc("2024-03-10 03:00:30"), False),
        (DAILY, utc("2024-03-10 03:05:00"), utc("2024-03-10 23:59:59"), False),
        # a run just before the fire time does not
        (DAILY, utc("2024-03-10 02:59:59") + 0.9, utc("2024-03-10 03:00:00"), True),
        # every 15 minutes
        ("*/15 * * * *", utc("2024-03-10 03:00:00"), utc("2024-03-10 03:14:59"), False),
        ("*/15 * * * *", utc("2024-03-10 03:00:00"), utc("2024-03-10 03:15:00"), True),
        # weekly, Sunday 04:00 (2024-03-03 and 2024-03-10 are Sundays)
        ("0 4 * * 0", utc("2024-03-03 04:00:00"), utc("2024-03-09 23:59:59"), False),
        ("0 4 * * 0", utc("2024-03-03 04:00:00"), utc("2024-03-10 04:00:00"), True),
        # monthly, on the 1st: over a month end and a leap day
        ("0 0 1 * *", utc("2024-02-01 00:00:00"), utc("2024-02-29 23:59:59"), False),
        ("0 0 1 * *", utc("2024-02-01 00:00:00"), utc("2024-03-01 00:00:00"), True),
        # over a year end
        (DAILY, utc("2023-12-31 03:00:00"), utc("2024-01-01 03:00:00"), True),
    ],
)
def test_due_after_the_last_run(schedule: str, last: float, now: float, expected: bool) -> None:
    assert due(schedule, last, since=0.0, now=now) is expected


@pytest.mark.parametrize(
    ("since", "now", "expected"),
    [
        # created at 02:00: the first scheduled backup is at 03:00
        (utc("2024-03-10 02:00:00"), utc("2024-03-10 02:59:59"), False),
        (utc("2024-03-10 02:00:00"), utc("2024-03-10 03:00:00"), True),
        # created at 03:00 exactly, or after: tomorrow's
        (utc("2024-03-10 03:00:00"), utc("2024-03-10 03:00:30"), False),
        (utc("2024-03-10 03:10:00"), utc("2024-03-11 02:59:59"), False),
        (utc("2024-03-10 03:10:00"), utc("2024-03-11 03:00:00"), True),
    ],
)
def test_due_since_creation_when_nothing_ran(since: float, now: float, expected: bool) -> None:
    assert due(DAILY, None, since=since, now=now) is expected


def test_since_is_ignored_once_a_backup_ran() -> None:
    # created long ago, ran at 03:00 today: not due until tomorrow
    assert not due(DAILY, utc("2024-03-10 03:00:00"), utc("2024-01-01 00:00:00"),
                   utc("2024-03-10 12:00:00"))  # fmt: skip


@pytest.fixture
def local_zone(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run with the process in another time zone; restored afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TZ", str(request.param))
    time.tzset()
    try:
        yield
    finally:
        mp.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("local_zone", "offset_s"),
    [("America/New_York", -5 * 3600), ("Asia/Kolkata", 19800), ("UTC", 0)],
    indirect=["local_zone"],
)
@pytest.mark.usefixtures("local_zone")
def test_schedules_are_in_utc_whatever_the_local_zone(offset_s: int) -> None:
    assert time.localtime(YESTERDAY_3AM).tm_gmtoff == offset_s  # the zone did change
    # 2024-03-10 is a DST change in New York: UTC has none
    assert not due(DAILY, YESTERDAY_3AM, 0.0, utc("2024-03-10 02:59:59"))
    assert due(DAILY, YESTERDAY_3AM, 0.0, utc("2024-03-10 03:00:00"))
    assert not due("30 7 * * *", utc("2024-03-09 07:30:00"), 0.0, utc("2024-03-10 07:29:59"))
    assert due("30 7 * * *", utc("2024-03-09 07:30:00"), 0.0, utc("2024-03-10 07:30:00"))
