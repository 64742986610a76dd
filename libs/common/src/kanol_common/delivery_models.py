"""The delivery tables every service carries: the outbox and the inbox.

Their migrations are :func:`kanol_common.migrations.create_delivery_tables`, which each
service's first revision calls; the columns there must match these.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    bindparam,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine
from sqlmodel import Field, SQLModel

OUTBOX_TABLE = "kanol_outbox"
INBOX_TABLE = "kanol_inbox"

# SQLite only makes an INTEGER PRIMARY KEY auto-increment; PostgreSQL gets a bigint.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(SQLModel, table=True):
    """An event written in the same transaction as the change it reports, not yet sent.

    ``topic`` is the logical topic; the relay adds the deployment's prefix. ``headers``
    holds the CloudEvents attributes and the trace context of the request that wrote it.
    """

    __tablename__ = OUTBOX_TABLE
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_kanol_outbox_event_id"),
        # The relay's claim (unpublished rows in id order) and the backlog count read only
        # this partial index, however many published rows the table keeps.
        Index(
            "ix_kanol_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=Column(ID_TYPE, primary_key=True, autoincrement=True)
    )
    event_id: str = Field(sa_column=Column(String(64), nullable=False))
    topic: str = Field(sa_column=Column(String(255), nullable=False))
    key: str = Field(sa_column=Column(String(255), nullable=False))
    headers: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    published_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )


class InboxEntry(SQLModel, table=True):
    """An event a consumer group has handled: a redelivered copy is recognised and skipped."""

    __tablename__ = INBOX_TABLE

    consumer_group: str = Field(sa_column=Column(String(255), primary_key=True))
    event_id: str = Field(sa_column=Column(String(64), primary_key=True))
    event_type: str = Field(sa_column=Column(String(255), nullable=False))
    handled_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


outbox_table = OutboxMessage.__table__  # type: ignore[attr-defined]
inbox_table = InboxEntry.__table__  # type: ignore[attr-defined]


def unnest_array(name: str, values: Iterable[Any], item_type: TypeEngine[Any]) -> TableValuedAlias:
    """``unnest(:name) AS name(value)`` on PostgreSQL: a set of values as one parameter."""
    parameter = bindparam(name, list(values), type_=postgresql.ARRAY(item_type))
    return func.unnest(parameter).table_valued("value").render_derived(name=name)


def unnest_strings(name: str, values: Iterable[str]) -> TableValuedAlias:
    return unnest_array(name, values, String())
