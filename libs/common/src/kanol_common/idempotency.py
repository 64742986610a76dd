"""``Idempotency-Key`` on POST routes: the same key and request get the same response, once.

A service keeps, in its own database, each key a caller sent with the fingerprint of its
request and the response it got. The record is written in the same transaction as the
request's effect, so either both are kept or neither: a retry after a crash or a lost
answer replays the stored response and does nothing twice. The same key with another
request is refused (422 ``idempotency-key-reused``).

In a route::

    fingerprint = request_fingerprint("POST", request.url.path, body)
    replayed = await replay(session, caller.client_id, key, fingerprint)
    if replayed is not None:
        return replayed
    ... do the work with ``session`` ...
    response = JSONResponse(payload, status_code=201)
    remember(session, caller.client_id, key, fingerprint, response)
    return await commit_or_replay(session, caller.client_id, key, fingerprint, response)

The table comes from a migration calling :func:`create_idempotency_table` (and
:func:`drop_idempotency_table` on downgrade). The fingerprint is the route's choice: the
raw body for JSON, the parts' digests for a multipart upload (whose boundary changes with
every send of the same content).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Header, Response
from sqlalchemy import JSON, Column, DateTime, Integer, LargeBinary, String
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.errors import Conflict, InvalidContent

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TABLE = "kanol_idempotency"
MAX_KEY_LENGTH = 255
# Headers a replay gives back; the others are the server's of the moment.
_KEPT_HEADERS = ("location", "content-type")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Any string unique to this request (a UUID): sending the same request"
        " again with the same key replays the first response and does nothing twice.",
    ),
]


class IdempotencyKeyReused(InvalidContent):
    type_slug = "idempotency-key-reused"
    title = "Idempotency-Key already used for another request"


class IdempotencyKeyInProgress(Conflict):
    type_slug = "idempotency-key-in-progress"
    title = "A request with this Idempotency-Key is being processed"


class IdempotencyRecord(SQLModel, table=True):
    """One key a caller sent, what its request was and what it got."""

    __tablename__ = IDEMPOTENCY_TABLE

    scope: str = Field(sa_column=Column(String(255), primary_key=True))
    key: str = Field(sa_column=Column(String(MAX_KEY_LENGTH), primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(64), nullable=False))
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    headers: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def request_fingerprint(*parts: bytes | str) -> str:
    """A SHA-256 over the parts that make two requests the same (length-prefixed)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


async def replay(
    session: AsyncSession, scope: str, key: str | None, fingerprint: str
) -> Response | None:
    """The stored response for this key, ``None`` for a new key; refuses another request."""
    if key is None:
        return None
    record = await session.get(IdempotencyRecord, (scope, key))
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            f"The Idempotency-Key {key!r} was sent before with another request; use a new"
            " key for a new request",
            idempotency_key=key,
        )
    headers = dict(record.headers)
    headers["Idempotency-Replayed"] = "true"
    media_type = headers.pop("content-type", None)
    return Response(
        content=record.body, status_code=record.status_code, headers=headers, media_type=media_type
    )


def remember(
    session: AsyncSession, scope: str, key: str | None, fingerprint: str, response: Response
) -> None:
    """Keep the response under the key, in the caller's transaction (nothing without a key)."""
    if key is None:
        return
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    session.add(
        IdempotencyRecord(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            status_code=response.status_code,
            headers=headers,
            body=bytes(response.body),
            created_at=datetime.now(UTC),
        )
    )


async def commit_or_replay(
    session: AsyncSession, scope: str, key: str | None, fingerprint: str, response: Response
) -> Response:
    """Commit the work and its record; if a twin request committed first, replay its answer.

    Two requests with one key racing: both did the work in their transactions, the
    database keeps one record; the loser's work rolls back and it answers as the winner.
    """
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if key is None:
            raise
        replayed = await replay(session, scope, key, fingerprint)
        if replayed is None:
            raise IdempotencyKeyInProgress(
                f"Another request with the Idempotency-Key {key!r} is being processed"
            ) from None
        return replayed
    return response


def create_idempotency_table() -> None:
    """Create the idempotency table; call it from a service's migration."""
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        IDEMPOTENCY_TABLE,
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(MAX_KEY_LENGTH), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_idempotency_table() -> None:
    from alembic import op

    op.drop_table(IDEMPOTENCY_TABLE)


def scope_of(*parts: Any) -> str:
    """The scope a key lives in, e.g. the caller's organisation and client id."""
    return ":".join(str(part) for part in parts)[:255]
