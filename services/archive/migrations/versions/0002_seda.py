"""SEDA transfers: each archive's source key, manifest and ATR; Idempotency-Key records.

Revision ID: 0002_seda
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kanol_common.idempotency import create_idempotency_table, drop_idempotency_table

revision: str = "0002_seda"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("source_kind", 16),
    ("pes_flow_id", 64),
    ("originating_agency", 64),
    ("seda_version", 8),
    ("message_identifier", 255),
    ("reply_identifier", 255),
    ("source_key", 320),
    ("manifest_sha256", 64),
    ("reply_sha256", 64),
)


def upgrade() -> None:
    with op.batch_alter_table("archive") as batch:
        for name, length in _COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))

    # The archives made before SEDA came from acknowledged actes: same natural key as now,
    # given to the first archive of each acte (a second one, if any, keeps none).
    op.execute(
        "UPDATE archive SET source_kind = 'acte', source_key = 'acte:' || acte_id "
        "WHERE acte_id IS NOT NULL AND NOT EXISTS ("
        " SELECT 1 FROM archive AS earlier WHERE earlier.acte_id = archive.acte_id"
        " AND (earlier.deposited_at < archive.deposited_at"
        " OR (earlier.deposited_at = archive.deposited_at AND earlier.id < archive.id)))"
    )
    with op.batch_alter_table("archive") as batch:
        batch.create_unique_constraint("uq_archive_source_key", ["source_key"])

    # POST /v1/transfers honours Idempotency-Key; this branch alone creates the table.
    create_idempotency_table()


def downgrade() -> None:
    drop_idempotency_table()
    with op.batch_alter_table("archive") as batch:
        batch.drop_constraint("uq_archive_source_key", type_="unique")
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
