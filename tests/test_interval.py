"""The data interval: parsing, the names derived from it, and the errors that name the bad input."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from seclake_ml.interval import MAX_INTERVAL_DAYS, DataInterval, iso, parse_utc

UTC = timezone.utc
WEEK = DataInterval(datetime(2024, 1, 1, 3, tzinfo=UTC), datetime(2024, 1, 8, 3, tzinfo=UTC))


def test_parse_accepts_the_forms_runs_and_users_give() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert parse_utc("2024-01-01T03:00:00Z") == datetime(2024, 1, 1, 3, tzinfo=UTC)
    assert parse_utc("2024-01-01T05:00:00+02:00") == datetime(2024, 1, 1, 3, tzinfo=UTC)
    assert parse_utc(datetime(2024, 1, 1, 5, tzinfo=plus_two)) == datetime(2024, 1, 1, 3, tzinfo=UTC)
    assert parse_utc(datetime(2024, 1, 1, 3)) == datetime(2024, 1, 1, 3, tzinfo=UTC)  # naive is UTC
    assert parse_utc("20240101") == parse_utc("2024-01-01") == parse_utc(date(2024, 1, 1))
    assert type(parse_utc(datetime(2024, 1, 1, tzinfo=UTC))) is datetime
    for bad in ("next monday", "", "2022-02-30", None, 17):
        with pytest.raises(ValueError, match="start"):
            parse_utc(bad, "start")


def test_one_value_names_everything() -> None:
    assert WEEK.to_xcom() == {"start": "2024-01-01T03:00:00Z", "end": "2024-01-08T03:00:00Z"}
    assert WEEK.key == "interval=20240101T030000Z_20240108T030000Z"
    assert WEEK.model_version() == "ipinsights-20240101T0300Z-20240108T0300Z"
    assert WEEK.model_version("risk") == "risk-20240101T0300Z-20240108T0300Z"
    assert WEEK.batch_id == "interval-20240101T030000Z_20240108T030000Z"
    assert WEEK.token == "20240101t0300-20240108t0300"
    assert DataInterval.parse("2024-01-01", "2024-01-08").token == "20240101-20240108"
    assert WEEK.label == "[2024-01-01T03:00:00Z, 2024-01-08T03:00:00Z)"
    assert iso(WEEK.start) == WEEK.start_iso


def test_round_trips() -> None:
    assert DataInterval.from_key(WEEK.key) == WEEK
    assert DataInterval.from_xcom(WEEK.to_xcom()) == WEEK
    assert DataInterval.parse(WEEK.start_iso, WEEK.end_iso) == WEEK
    for bad in ("interval=2024", "20240101T030000Z_20240108T030000Z", None):
        with pytest.raises(ValueError, match="interval key"):
            DataInterval.from_key(bad)
    with pytest.raises(ValueError, match="'start' and 'end'"):
        DataInterval.from_xcom({"start": WEEK.start_iso}, "extraction")


def test_from_context_and_explicit_bounds() -> None:
    ctx = {"data_interval_start": WEEK.start, "data_interval_end": WEEK.end}
    assert DataInterval.from_context(ctx) == WEEK
    assert DataInterval.from_context(ctx, start="2024-01-05T00:00:00Z").start == datetime(2024, 1, 5, tzinfo=UTC)
    assert DataInterval.from_context(None, "2024-01-01T03:00:00Z", "2024-01-08T03:00:00Z") == WEEK
    with pytest.raises(ValueError, match="no data window"):
        DataInterval.from_context({"data_interval_start": None, "data_interval_end": None})
    with pytest.raises(ValueError, match="empty data interval"):
        DataInterval.from_context(ctx, start="2024-01-09T00:00:00Z")
    with pytest.raises(ValueError, match="invalid time"):
        DataInterval.from_context(ctx, end="next monday")


def test_lookback_split_and_days() -> None:
    back = WEEK.lookback(14)
    assert back == DataInterval(datetime(2023, 12, 25, 3, tzinfo=UTC), WEEK.end)
    assert DataInterval.ending_at("2024-01-08T03:00:00Z", "14") == back
    for bad in (0, 367, True, 1.5, "x", None):
        with pytest.raises(ValueError, match="lookback_days"):
            WEEK.lookback(bad)
    assert WEEK.split_at(0.5) == datetime(2024, 1, 4, 15, tzinfo=UTC)
    for bad in (0, 1, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="split fraction"):
            WEEK.split_at(bad)
    assert WEEK.days()[0] == date(2024, 1, 1) and WEEK.days()[-1] == date(2024, 1, 8) and len(WEEK.days()) == 8
    assert DataInterval.parse("2024-01-01", "2024-01-02").days() == [date(2024, 1, 1)]


def test_refused_intervals() -> None:
    with pytest.raises(ValueError, match="empty data interval"):
        DataInterval.parse("2024-01-02", "2024-01-02")
    with pytest.raises(ValueError, match=f"at most {MAX_INTERVAL_DAYS} days"):
        DataInterval.parse("0001-01-01", "9999-12-31")
    with pytest.raises(ValueError, match="timezone-aware"):
        DataInterval(datetime(2024, 1, 1), datetime(2024, 1, 2))  # type: ignore[arg-type]
    assert sorted([WEEK.lookback(1), WEEK])[0] == WEEK  # ordered by start, then end


def test_lookback_of_run_ends_at_the_data_interval_or_the_triggering_hour() -> None:
    from types import SimpleNamespace

    end = datetime(2024, 3, 8, tzinfo=timezone.utc)
    scheduled = {"data_interval_end": end, "dag_run": SimpleNamespace(run_after=end)}
    assert DataInterval.lookback_of_run(scheduled, 7) == DataInterval(end - timedelta(days=7), end)
    after = datetime(2024, 3, 9, 14, 37, 12, tzinfo=timezone.utc)
    triggered = {"data_interval_end": None, "triggering_asset_events": {"drift": ["event"]},
                 "dag_run": SimpleNamespace(run_after=after)}
    hour = datetime(2024, 3, 9, 14, tzinfo=timezone.utc)
    assert DataInterval.lookback_of_run(triggered, 2) == DataInterval(hour - timedelta(days=2), hour)
    with pytest.raises(ValueError, match="neither a data interval nor a run_after"):
        DataInterval.lookback_of_run({"dag_run": SimpleNamespace(run_after=None, logical_date=None)}, 2)
    with pytest.raises(ValueError, match="lookback_days"):
        DataInterval.lookback_of_run(scheduled, 0)
