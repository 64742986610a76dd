"""identity's first tables: organisations, API clients, signing keys, outbox and inbox.

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
        "organisation",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("siren", name="uq_organisation_siren"),
    )

    op.create_table(
        "api_client",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column(
            "siren",
            sa.String(9),
            sa.ForeignKey("organisation.siren", name="fk_api_client_organisation"),
            nullable=False,
        ),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("client_id", name="uq_api_client_client_id"),
    )
    op.create_index("ix_api_client_siren", "api_client", ["siren"])

    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(10), nullable=False),
        # The private JWK; see kanol_identity.models.SigningKey about keeping it in a KMS.
        sa.Column("private_jwk", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_signing_key_retired_at", "signing_key", ["retired_at"])

    create_delivery_tables()


def downgrade() -> None:
    drop_delivery_tables()
    op.drop_index("ix_signing_key_retired_at", table_name="signing_key")
    op.drop_table("signing_key")
    op.drop_index("ix_api_client_siren", table_name="api_client")
    op.drop_table("api_client")
    op.drop_table("organisation")
