"""Alembic glue shared by every service's ``migrations/env.py``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run_with_connection(connection: Connection, target_metadata: MetaData | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str, target_metadata: MetaData | None) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run_with_connection, target_metadata)
    await engine.dispose()


def run_env(target_metadata: MetaData | None = None) -> None:
    """Run the migrations of the calling ``env.py`` online, on an async engine."""
    config = context.config
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("No database URL given to the migrations (sqlalchemy.url).")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    asyncio.run(_run_async(url, target_metadata))


def create_delivery_tables() -> None:
    """Create the outbox and inbox tables; call it from a service's first revision.

    The columns match :mod:`kanol_common.delivery_models`.
    """
    import sqlalchemy as sa
    from alembic import op

    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "kanol_outbox",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_kanol_outbox_event_id"),
    )
    op.create_index("ix_kanol_outbox_published_at", "kanol_outbox", ["published_at"])
    op.create_index(
        "ix_kanol_outbox_unpublished",
        "kanol_outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )

    op.create_table(
        "kanol_inbox",
        sa.Column("consumer_group", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_kanol_inbox_handled_at", "kanol_inbox", ["handled_at"])


def drop_delivery_tables() -> None:
    """Drop what :func:`create_delivery_tables` created; for a first revision's downgrade."""
    from alembic import op

    op.drop_index("ix_kanol_inbox_handled_at", table_name="kanol_inbox")
    op.drop_table("kanol_inbox")
    op.drop_index("ix_kanol_outbox_unpublished", table_name="kanol_outbox")
    op.drop_index("ix_kanol_outbox_published_at", table_name="kanol_outbox")
    op.drop_table("kanol_outbox")
