"""An organisation's arrondissement and nature code in the ACTES envelope (IDCL).

Also joins the two branches that grew from 0001, so the history has one head again.

Revision ID: 0003_idcl
Revises: 0002_directory, 0002_oauth
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_idcl"
down_revision: str | tuple[str, ...] | None = ("0002_directory", "0002_oauth")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain nullable columns: SQLite adds them in place, no batch copy needed.
    op.add_column("organisation", sa.Column("arrondissement", sa.Integer(), nullable=True))
    op.add_column("organisation", sa.Column("nature_collectivite", sa.String(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        batch.drop_column("nature_collectivite")
        batch.drop_column("arrondissement")
