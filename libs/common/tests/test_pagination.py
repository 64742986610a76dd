"""Cursor pagination: opaque cursors that round-trip, refuse forgeries, and pages that end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from kanol_common.pagination import (
    MAX_PAGE_SIZE,
    InvalidCursor,
    PageCursor,
    clamp_limit,
    decode_optional,
    page_of,
)


def test_a_cursor_round_trips_in_utc() -> None:
    cursor = PageCursor(datetime(2024, 3, 12, 10, 0, tzinfo=UTC), uuid.uuid4())
    assert PageCursor.decode(cursor.encode()) == cursor
    naive = PageCursor(datetime(2024, 3, 12, 10, 0), cursor.id)  # as SQLite hands it back
    assert PageCursor.decode(naive.encode()) == cursor


@pytest.mark.parametrize("text", ["nope", "e30", "x" * 600, "eyJtIjoiMjAyNCIsImkiOiJ4In0"])
def test_a_cursor_this_api_never_handed_out_is_a_400(text: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        PageCursor.decode(text)
    assert refused.value.status == 400


def test_pages_and_limits() -> None:
    rows = [PageCursor(datetime(2024, 1, day, tzinfo=UTC), uuid.uuid4()) for day in range(1, 4)]
    items, next_cursor = page_of(rows, 2, lambda row: row)
    assert items == rows[:2]
    assert decode_optional(next_cursor) == rows[1]
    assert page_of(rows[:2], 2, lambda row: row) == (rows[:2], None)
    assert decode_optional(None) is None
    assert clamp_limit(None) == 50 and clamp_limit(0) == 1 and clamp_limit(10_000) == MAX_PAGE_SIZE
