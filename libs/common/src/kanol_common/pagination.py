"""Cursor pagination shared by every service's list endpoints: newest first, stable, opaque.

A page is ordered by a moment then an id, both descending; the cursor names the last row
of a page, so the next page starts strictly after it whatever rows arrive meanwhile
(keyset pagination, no OFFSET). The cursor is opaque to callers: base64url of a small JSON.

Usage, in a repository::

    query = query.where(keyset_after(col(Acte.created_at), col(Acte.id), cursor))
    query = query.order_by(col(Acte.created_at).desc(), col(Acte.id).desc())
    rows = (await session.exec(query.limit(limit + 1))).all()
    items, next_cursor = page_of(rows, limit, lambda row: PageCursor(row.created_at, row.id))
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from kanol_common.db import as_utc
from kanol_common.errors import BadRequest

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_CURSOR_LENGTH = 512

T = TypeVar("T")


class InvalidCursor(BadRequest):
    type_slug = "invalid-cursor"
    title = "Invalid pagination cursor"


@dataclass(frozen=True)
class PageCursor:
    """Where a page ended: the moment and the id of its last row."""

    moment: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps({"m": as_utc(self.moment).isoformat(), "i": str(self.id)})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        """The cursor, or :class:`InvalidCursor` (400) for one this API never handed out."""
        if len(text) > MAX_CURSOR_LENGTH:
            raise InvalidCursor("The cursor is too long to be one this API handed out")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            fields = json.loads(raw)
            return cls(as_utc(datetime.fromisoformat(fields["m"])), uuid.UUID(fields["i"]))
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise InvalidCursor("The cursor was not handed out by this API") from exc


def decode_optional(text: str | None) -> PageCursor | None:
    return PageCursor.decode(text) if text else None


def clamp_limit(limit: int | None) -> int:
    """A page size within 1 and :data:`MAX_PAGE_SIZE`."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    return max(1, min(limit, MAX_PAGE_SIZE))


def keyset_after(moment: Any, identifier: Any, cursor: PageCursor | None) -> ColumnElement[bool]:
    """The rows after ``cursor`` in (moment, id) descending order; all without one."""
    if cursor is None:
        return true()
    return or_(
        moment < cursor.moment,
        and_(moment == cursor.moment, identifier < cursor.id),
    )


def page_of(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], PageCursor]
) -> tuple[list[T], str | None]:
    """The page (``rows`` was fetched with ``limit + 1``) and the cursor of the next one."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    return items, cursor_of(items[-1]).encode()
