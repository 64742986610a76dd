"""Times read back from the database are shown in UTC with their zone, whatever the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel

from kanol_common.db import UtcDateTime, as_utc, as_utc_or_none


class Shown(BaseModel):
    at: UtcDateTime
    maybe: UtcDateTime | None = None


def test_a_naive_time_as_sqlite_returns_it_is_read_as_utc() -> None:
    naive = datetime(2026, 12, 4, 10, 30)

    assert as_utc(naive) == datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    assert as_utc(naive).tzinfo is UTC


def test_an_aware_time_is_converted_to_utc() -> None:
    paris_winter = timezone(timedelta(hours=1))
    aware = datetime(2026, 12, 4, 11, 30, tzinfo=paris_winter)

    converted = as_utc(aware)

    assert converted.tzinfo is UTC
    assert converted.hour == 10
    assert as_utc_or_none(None) is None


def test_an_api_model_shows_the_zone_of_a_naive_time() -> None:
    shown = Shown(at=datetime(2026, 12, 4, 10, 30), maybe=datetime(2026, 12, 5, 8, 0))

    assert shown.model_dump_json() == (
        '{"at":"2026-12-04T10:30:00Z","maybe":"2026-12-05T08:00:00Z"}'
    )
