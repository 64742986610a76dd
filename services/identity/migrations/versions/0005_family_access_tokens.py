"""The access tokens of each login's refresh token family, revoked with it.

Revision ID: 0005_family_access_tokens
Revises: 0004_consents
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_family_access_tokens"
down_revision: str | None = "0004_consents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "family_access_token",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_family_access_token_family_id", "family_access_token", ["family_id"])
    op.create_index("ix_family_access_token_expires_at", "family_access_token", ["expires_at"])


def downgrade() -> None:
    op.drop_table("family_access_token")
