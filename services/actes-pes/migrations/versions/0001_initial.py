"""actes-pes's first tables: actes, their documents and history, the return cursor, delivery.

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

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "acte",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("numero_interne", sa.String(15), nullable=False),
        sa.Column("annee_decision", sa.Integer(), nullable=False),
        sa.Column("nature", sa.Integer(), nullable=False),
        sa.Column("matiere", sa.String(16), nullable=False),
        sa.Column("objet", sa.String(500), nullable=False),
        sa.Column("date_decision", sa.Date(), nullable=False),
        sa.Column("identifiant_acte", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("transmission_id", sa.String(64), nullable=True),
        sa.Column("transmission_number", sa.BigInteger(), nullable=True),
        sa.Column("transmission_attempts", sa.Integer(), nullable=False),
        sa.Column("prefecture_transmission_id", sa.String(64), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("nature_anomalie", sa.String(8), nullable=True),
        sa.Column("detail_anomalie", sa.Text(), nullable=True),
        sa.Column("traceparent", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transmitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("date_reception", sa.Date(), nullable=True),
        sa.UniqueConstraint(
            "siren", "annee_decision", "numero_interne", name="uq_acte_siren_annee_numero"
        ),
        sa.UniqueConstraint("identifiant_acte", name="uq_acte_identifiant_acte"),
    )
    op.create_index("ix_acte_siren", "acte", ["siren"])
    op.create_index("ix_acte_state", "acte", ["state"])
    op.create_index("ix_acte_prefecture_transmission_id", "acte", ["prefecture_transmission_id"])

    op.create_table(
        "acte_document",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "acte_id", sa.Uuid(), sa.ForeignKey("acte.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("acte_id", "role", name="uq_acte_document_role"),
    )
    op.create_index("ix_acte_document_acte_id", "acte_document", ["acte_id"])

    op.create_table(
        "acte_state_change",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column(
            "acte_id", sa.Uuid(), sa.ForeignKey("acte.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_acte_state_change_acte_id", "acte_state_change", ["acte_id"])

    op.create_table(
        "prefecture_cursor",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )

    create_delivery_tables()


def downgrade() -> None:
    drop_delivery_tables()
    op.drop_table("prefecture_cursor")
    op.drop_index("ix_acte_state_change_acte_id", table_name="acte_state_change")
    op.drop_table("acte_state_change")
    op.drop_index("ix_acte_document_acte_id", table_name="acte_document")
    op.drop_table("acte_document")
    op.drop_index("ix_acte_prefecture_transmission_id", table_name="acte")
    op.drop_index("ix_acte_state", table_name="acte")
    op.drop_index("ix_acte_siren", table_name="acte")
    op.drop_table("acte")
