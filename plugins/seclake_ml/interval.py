"""The data interval: one half-open UTC window ``[start, end)`` and every name derived from it.

A task makes its :class:`DataInterval` once, from the Airflow context (:meth:`DataInterval.from_context`)
or from command-line arguments (:meth:`DataInterval.parse`). Output folders, model versions, SageMaker
name parts, scoring batch ids and XCom hand-offs all come from its methods, so the same window always
has the same names and no other code parses interval strings.

Standard library only: DAG files and the Lambda import this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

KEY_PREFIX = "interval="
_KEY_RE = re.compile(r"interval=(\d{8}T\d{6}Z)_(\d{8}T\d{6}Z)")
_KEY_FMT = "%Y%m%dT%H%M%SZ"
_VERSION_FMT = "%Y%m%dT%H%MZ"
MAX_LOOKBACK_DAYS = 366
MAX_INTERVAL_DAYS = 3660  # ten years: longer windows are typing mistakes, refused before any day is listed


def parse_utc(value: Any, name: str = "timestamp") -> datetime:
    """A timezone-aware UTC ``datetime`` from a datetime, a date, or an ISO-8601 string.

    Naive values are taken as UTC; ``Z`` is accepted; a date alone (``2026-01-05`` or ``20260105``) is
    midnight UTC. The result is a plain ``datetime`` (not a subclass such as pendulum's), so it compares
    and serialises the same everywhere.

    :param value: the value to convert.
    :param name: the argument's name, used in error messages.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if len(text) == 8 and text.isdigit():
            text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{name}: invalid time {value[:60]!r}; expected ISO 8601 such as 2026-01-05 or 2026-01-05T00:00:00Z"
            ) from None
    else:
        raise ValueError(f"{name}: got {repr(value)[:60]}; expected a datetime or an ISO-8601 timestamp string")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return datetime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, tzinfo=timezone.utc)


def iso(value: Any) -> str:
    """``2024-01-01T03:00:00Z`` text for a UTC instant (seconds precision)."""
    return parse_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_iso(ts: datetime) -> str:
    """``ts`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (how label and allow-list times are stored)."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, order=True)
class DataInterval:
    """A half-open UTC window ``[start, end)`` with ``start < end``, at most :data:`MAX_INTERVAL_DAYS` long.

    Build it with :meth:`parse`, :meth:`from_context`, :meth:`from_key` or :meth:`from_xcom`; the
    constructor takes aware datetimes only.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"data interval {name}: got {value!r}; expected a timezone-aware datetime")
            object.__setattr__(self, name, parse_utc(value, name))
        if self.end <= self.start:
            raise ValueError(f"empty data interval: start {iso(self.start)} is not before end {iso(self.end)}")
        if (self.end - self.start).days > MAX_INTERVAL_DAYS:
            raise ValueError(f"data interval {self.label} spans {(self.end - self.start).days} days; "
                             f"at most {MAX_INTERVAL_DAYS} days are allowed")

    # ------------------------------------------------------------------------------ constructors
    @classmethod
    def parse(cls, start: Any, end: Any) -> DataInterval:
        """The interval of two bounds, each a datetime, a date or an ISO-8601 string."""
        return cls(parse_utc(start, "start"), parse_utc(end, "end"))

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None, start: Any = None, end: Any = None) -> DataInterval:
        """The interval a task works on: explicit bounds win, each missing one comes from the run's
        ``data_interval_start`` / ``data_interval_end``.

        :param context: the task context (may be ``None`` when both bounds are given).
        :param start: explicit start (datetime or ISO-8601 text), optional.
        :param end: explicit end, optional.
        """
        ctx = context or {}
        if start in (None, ""):
            start = ctx.get("data_interval_start")
        if end in (None, ""):
            end = ctx.get("data_interval_end")
        if start is None or end is None:
            raise ValueError(
                "no data window: this run has no data interval (e.g. a manual run of an unscheduled DAG); "
                "pass start and end explicitly as ISO-8601 timestamps"
            )
        return cls.parse(start, end)

    @classmethod
    def lookback_of_run(cls, context: Mapping[str, Any], days: Any) -> DataInterval:
        """The ``days`` whole days a training run looks back over: up to its data interval's end, or, for
        a run an Asset event triggered (drift, or an event made by hand; it has no data interval), up to
        the hour it was triggered."""
        end = context.get("data_interval_end")
        if end is None or context.get("triggering_asset_events"):
            run = context.get("dag_run")
            after = getattr(run, "run_after", None) or getattr(run, "logical_date", None)
            if after is None:
                raise ValueError("this run has neither a data interval nor a run_after time to end its window at")
            end = parse_utc(after, "run_after").replace(minute=0, second=0, microsecond=0)
        return cls.ending_at(end, days)

    @classmethod
    def ending_at(cls, end: Any, days: Any) -> DataInterval:
        """The ``days`` whole days (1-366) that end at ``end``."""
        if isinstance(days, bool):
            days = None
        try:
            n = int(days)
        except (TypeError, ValueError):
            n = 0
        if not 1 <= n <= MAX_LOOKBACK_DAYS or (isinstance(days, float) and days != n):
            raise ValueError(f"lookback_days: got {days!r}; expected a whole number of days (1-{MAX_LOOKBACK_DAYS})")
        stop = parse_utc(end, "end")
        return cls(stop - timedelta(days=n), stop)

    @classmethod
    def from_key(cls, key: str) -> DataInterval:
        """The interval named by a path segment ``interval=20240101T030000Z_20240108T030000Z``."""
        found = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
        if not found:
            raise ValueError(f"interval key: got {str(key)[:80]!r}; expected interval=YYYYMMDDTHHMMSSZ_YYYYMMDDTHHMMSSZ")
        s, e = (datetime.strptime(g, _KEY_FMT).replace(tzinfo=timezone.utc) for g in found.groups())
        return cls(s, e)

    @classmethod
    def from_xcom(cls, value: Any, name: str = "interval") -> DataInterval:
        """The interval of a hand-off mapping with ``start`` and ``end`` (as written by :meth:`to_xcom`)."""
        if not isinstance(value, Mapping) or "start" not in value or "end" not in value:
            raise ValueError(f"{name}: expected a mapping with 'start' and 'end', got {type(value).__name__}")
        return cls.parse(value["start"], value["end"])

    # ---------------------------------------------------------------------------------- names
    @property
    def start_iso(self) -> str:
        return iso(self.start)

    @property
    def end_iso(self) -> str:
        return iso(self.end)

    def to_xcom(self) -> dict[str, str]:
        """``{"start": ISO, "end": ISO}``: the form hand-off records and logs carry."""
        return {"start": self.start_iso, "end": self.end_iso}

    @property
    def key(self) -> str:
        """Path segment naming the window: ``interval=20240101T030000Z_20240108T030000Z``."""
        return f"{KEY_PREFIX}{self.start.strftime(_KEY_FMT)}_{self.end.strftime(_KEY_FMT)}"

    def model_version(self, prefix: str = "ipinsights") -> str:
        """``<prefix>-20240101T0300Z-20240108T0300Z``: the version of a model trained on this window."""
        return f"{prefix}-{self.start.strftime(_VERSION_FMT)}-{self.end.strftime(_VERSION_FMT)}"

    @property
    def token(self) -> str:
        """Compact form for SageMaker names: dates when both ends are midnight, else minutes too."""
        midnight = all((t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0) for t in (self.start, self.end))
        fmt = "%Y%m%d" if midnight else "%Y%m%dT%H%M"
        return f"{self.start.strftime(fmt)}-{self.end.strftime(fmt)}".lower()

    @property
    def batch_id(self) -> str:
        """Id of the scoring batch that covers this whole window: ``interval-<start>_<end>``."""
        return "interval-" + self.key.removeprefix(KEY_PREFIX)

    @property
    def label(self) -> str:
        """``[start, end)`` for log lines."""
        return f"[{self.start_iso}, {self.end_iso})"

    # ------------------------------------------------------------------------------ arithmetic
    def lookback(self, days: Any) -> DataInterval:
        """The ``days`` whole days that end where this interval ends."""
        return DataInterval.ending_at(self.end, days)

    def split_at(self, fraction: float) -> datetime:
        """The instant ``fraction`` (0-1, exclusive) of the way from start to end."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
            raise ValueError(f"split fraction: got {fraction!r}; expected a number between 0 and 1")
        return self.start + (self.end - self.start) * float(fraction)

    def days(self) -> list[date]:
        """The UTC calendar days the interval touches, in order."""
        first = self.start.date()
        last = (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def __str__(self) -> str:
        return self.label
