"""ACTES complete: annexes and piece types, messages after the dépôt, classifications,
late actes, cancellation, Idempotency-Key records.

Revision ID: 0002_actes
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kanol_common.idempotency import create_idempotency_table, drop_idempotency_table

revision: str = "0002_actes"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _acte_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("type_piece", sa.String(8), nullable=True),
        sa.Column("classification_date", sa.Date(), nullable=True),
        sa.Column("annexes_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("acknowledgement_overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transmission_stuck_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancellation_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancellation_reason", sa.Text(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("acte") as batch:
        for column in _acte_columns():
            batch.add_column(column)
    op.create_index("ix_acte_siren_created", "acte", ["siren", "created_at", "id"])
    with op.batch_alter_table("acte_document") as batch:
        batch.add_column(sa.Column("type_piece", sa.String(8), nullable=True))
        batch.add_column(sa.Column("position", sa.Integer(), nullable=True))

    op.create_table(
        "acte_message",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "acte_id", sa.Uuid(), sa.ForeignKey("acte.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("code", sa.String(4), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("date_courrier", sa.Date(), nullable=True),
        sa.Column("date_depot", sa.Date(), nullable=True),
        sa.Column("texte", sa.Text(), nullable=True),
        sa.Column("in_reply_to", sa.Uuid(), nullable=True),
        sa.Column("prefecture_transmission_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("acte_id", "number", name="uq_acte_message_number"),
    )
    op.create_index("ix_acte_message_acte_id", "acte_message", ["acte_id"])
    op.create_index("ix_acte_message_state", "acte_message", ["state"])

    op.create_table(
        "classification",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("date_classification", sa.Date(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "departement", "date_classification", name="uq_classification_version"
        ),
    )
    op.create_index("ix_classification_departement", "classification", ["departement"])

    create_idempotency_table()


def downgrade() -> None:
    drop_idempotency_table()
    op.drop_index("ix_classification_departement", table_name="classification")
    op.drop_table("classification")
    op.drop_index("ix_acte_message_state", table_name="acte_message")
    op.drop_index("ix_acte_message_acte_id", table_name="acte_message")
    op.drop_table("acte_message")
    with op.batch_alter_table("acte_document") as batch:
        batch.drop_column("position")
        batch.drop_column("type_piece")
    op.drop_index("ix_acte_siren_created", table_name="acte")
    with op.batch_alter_table("acte") as batch:
        for column in reversed(_acte_columns()):
            batch.drop_column(column.name)
