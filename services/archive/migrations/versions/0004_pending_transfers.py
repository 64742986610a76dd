"""Transfers received with Prefer: respond-async, checked after the answer.

Revision ID: 0004_pending_transfers
Revises: 0003_idcl
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_pending_transfers"
down_revision: str | None = "0003_idcl"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_transfer",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("package_sha256", sa.String(64), nullable=False),
        sa.Column("reply_sha256", sa.String(64), nullable=True),
        sa.Column("archive_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_pending_transfer_siren", "pending_transfer", ["siren"])
    op.create_index("ix_pending_transfer_state", "pending_transfer", ["state"])


def downgrade() -> None:
    op.drop_table("pending_transfer")
