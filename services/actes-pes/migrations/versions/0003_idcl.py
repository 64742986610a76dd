"""The envelope's codes (IDCL) of each organisation and of each acte.

The projection of organisations gains the arrondissement and nature code identity holds
for them; each acte records the ones it was submitted with, as it records its département,
so that a later change at identity does not alter an acte already in flight. Also joins the
three branches that grew from 0001, so the history has one head again.

Revision ID: 0003_idcl
Revises: 0002_actes, 0002_organisations, 0002_pes
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kanol_common.organisations import add_envelope_columns, drop_envelope_columns

revision: str = "0003_idcl"
down_revision: str | tuple[str, ...] | None = ("0002_actes", "0002_organisations", "0002_pes")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_envelope_columns()
    op.add_column("acte", sa.Column("arrondissement", sa.Integer(), nullable=True))
    op.add_column("acte", sa.Column("nature_collectivite", sa.String(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("acte") as batch:
        batch.drop_column("nature_collectivite")
        batch.drop_column("arrondissement")
    drop_envelope_columns()
