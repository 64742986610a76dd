"""The projection of organisations gains their ACTES envelope codes (IDCL).

Also joins the three branches that grew from 0001, so the history has one head again.

Revision ID: 0003_idcl
Revises: 0002_organisations, 0002_seda, 0002_trust
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from kanol_common.organisations import add_envelope_columns, drop_envelope_columns

revision: str = "0003_idcl"
down_revision: str | tuple[str, ...] | None = ("0002_organisations", "0002_seda", "0002_trust")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_envelope_columns()


def downgrade() -> None:
    drop_envelope_columns()
