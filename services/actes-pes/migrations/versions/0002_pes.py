"""PES V2: flows, their documents and history, returns from Hélios, the feeds' cursors.

Revision ID: 0002_pes
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_pes"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pes_flow",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("id_coll", sa.String(14), nullable=False),
        sa.Column("nom_fic", sa.String(255), nullable=False),
        sa.Column("typ_fic", sa.String(32), nullable=False),
        sa.Column("cod_col", sa.String(8), nullable=False),
        sa.Column("cod_bud", sa.String(8), nullable=False),
        sa.Column("id_post", sa.String(16), nullable=False),
        sa.Column("libelle_col_bud", sa.String(255), nullable=False),
        sa.Column("dte_str", sa.Date(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("signed", sa.Boolean(), nullable=False),
        sa.Column("signer_trusted", sa.Boolean(), nullable=False),
        sa.Column("signatures", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("transmission_key", sa.String(128), nullable=True),
        sa.Column("transmission_attempts", sa.Integer(), nullable=False),
        sa.Column("helios_id", sa.String(64), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("acquit_errors", sa.JSON(), nullable=False),
        sa.Column("date_ack", sa.Date(), nullable=True),
        sa.Column("traceparent", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transmitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("id_coll", "nom_fic", name="uq_pes_flow_id_coll_nom_fic"),
        sa.UniqueConstraint("sha256", name="uq_pes_flow_sha256"),
    )
    op.create_index("ix_pes_flow_siren", "pes_flow", ["siren"])
    op.create_index("ix_pes_flow_state", "pes_flow", ["state"])
    op.create_index("ix_pes_flow_helios_id", "pes_flow", ["helios_id"])
    # The list's order: an organisation's flows, newest first.
    op.create_index("ix_pes_flow_siren_created", "pes_flow", ["siren", "created_at", "id"])

    op.create_table(
        "pes_document",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "flow_id", sa.Uuid(), sa.ForeignKey("pes_flow.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("flow_id", "role", name="uq_pes_document_role"),
    )
    op.create_index("ix_pes_document_flow_id", "pes_document", ["flow_id"])

    op.create_table(
        "pes_state_change",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column(
            "flow_id", sa.Uuid(), sa.ForeignKey("pes_flow.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pes_state_change_flow_id", "pes_state_change", ["flow_id"])

    op.create_table(
        "pes_retour",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("helios_id", sa.String(64), nullable=False),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("id_coll", sa.String(14), nullable=False),
        sa.Column("nom_fic", sa.String(255), nullable=False),
        sa.Column("dte_str", sa.Date(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("helios_id", name="uq_pes_retour_helios_id"),
    )
    op.create_index("ix_pes_retour_siren", "pes_retour", ["siren"])

    op.create_table(
        "pes_cursor",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pes_cursor")
    op.drop_table("pes_retour")
    op.drop_table("pes_state_change")
    op.drop_table("pes_document")
    op.drop_table("pes_flow")
