"""Archives, their objects, and the outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kanol_common.migrations import create_delivery_tables, drop_delivery_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "archive",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("source_event_id", sa.String(64), nullable=False),
        sa.Column("source_event_type", sa.String(255), nullable=False),
        sa.Column("acte_id", sa.String(64), nullable=True),
        sa.Column("identifiant_acte", sa.String(64), nullable=True),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("nature", sa.Integer(), nullable=True),
        sa.Column("matiere", sa.String(32), nullable=True),
        sa.Column("date_decision", sa.Date(), nullable=True),
        sa.Column("deposited_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_event_id", name="uq_archive_source_event_id"),
    )
    op.create_index("ix_archive_siren_deposited", "archive", ["siren", "deposited_at", "id"])
    op.create_index("ix_archive_acte_id", "archive", ["acte_id"])
    op.create_index("ix_archive_identifiant_acte", "archive", ["identifiant_acte"])

    op.create_table(
        "archive_object",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "archive_id", sa.Uuid(), sa.ForeignKey("archive.id", name="fk_archive_object_archive"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sha512", sa.String(128), nullable=False),
        sa.Column("storage_key", sa.String(255), nullable=False),
        sa.UniqueConstraint("archive_id", "position", name="uq_archive_object_position"),
    )
    op.create_index("ix_archive_object_archive_id", "archive_object", ["archive_id"])

    create_delivery_tables()


def downgrade() -> None:
    drop_delivery_tables()
    op.drop_index("ix_archive_object_archive_id", table_name="archive_object")
    op.drop_table("archive_object")
    op.drop_index("ix_archive_identifiant_acte", table_name="archive")
    op.drop_index("ix_archive_acte_id", table_name="archive")
    op.drop_index("ix_archive_siren_deposited", table_name="archive")
    op.drop_table("archive")
