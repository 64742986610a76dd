"""When a PES flow was reported late in its current state.

Revision ID: 0004_pes_late
Revises: 0003_idcl
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_pes_late"
down_revision: str | None = "0003_idcl"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pes_flow", sa.Column("late_reported_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("pes_flow") as batch:
        batch.drop_column("late_reported_at")
