"""The projection of identity's organisations and their effective subscriptions.

Revision ID: 0002_organisations
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from kanol_common.organisations import create_organisation_tables, drop_organisation_tables

revision: str = "0002_organisations"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_organisation_tables()


def downgrade() -> None:
    drop_organisation_tables()
