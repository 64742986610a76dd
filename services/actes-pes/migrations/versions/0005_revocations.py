"""The API clients and agents identity cut off, from identity.events: their tokens stop
working within seconds (kanol_common.revocations).

Revision ID: 0005_revocations
Revises: 0004_pes_late
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from kanol_common.revocations import create_revocation_table, drop_revocation_table

revision: str = "0005_revocations"
down_revision: str | None = "0004_pes_late"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_revocation_table()


def downgrade() -> None:
    drop_revocation_table()
