"""Trust: the hash-chained logbook and its published heads, audits, retention rules,
elimination proposals and what became of each due archive.

Revision ID: 0002_trust
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002_trust"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The defaults of kanol_archive.retention.DEFAULT_RULES as they were when this ran: a
# migration never imports the code it outlives.
_RULES = (
    ("acte.DE", "APP-ACTES-DE", 10, "decision", "Keep", "ACC-00001", 0),
    ("acte.AR", "APP-ACTES-AR", 10, "decision", "Keep", "ACC-00001", 0),
    ("acte.AI", "APP-ACTES-AI", 10, "decision", "Keep", "ACC-00003", 50),
    ("acte.CC", "APP-ACTES-CC", 10, "decision", "Destroy", "ACC-00001", 0),
    ("acte.BF", "APP-ACTES-BF", 10, "decision", "Keep", "ACC-00001", 0),
    ("acte.AU", "APP-ACTES-AU", 10, "decision", "Destroy", "ACC-00001", 0),
    ("acte.ar_acte", "APP-ARACTE", 10, "deposit", "Destroy", "ACC-00001", 0),
    ("pes.flow", "APP-PES", 10, "deposit", "Destroy", "ACC-00001", 0),
    ("pes.acquit", "APP-PES-ACQUIT", 10, "deposit", "Destroy", "ACC-00001", 0),
    ("transfer", "APP-TRANSFER", 10, "deposit", "Keep", "ACC-00001", 0),
)


def upgrade() -> None:
    op.create_table(
        "logbook_entry",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("siren", sa.String(9), nullable=True),
        sa.Column("archive_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("hash", name="uq_logbook_entry_hash"),
    )
    op.create_index("ix_logbook_entry_siren", "logbook_entry", ["siren"])
    op.create_index("ix_logbook_entry_archive_id", "logbook_entry", ["archive_id"])
    op.create_table(
        "logbook_seal",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "audit_run",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("after_archive_id", sa.Uuid(), nullable=True),
        sa.Column("objects_checked", sa.BigInteger(), nullable=False),
        sa.Column("bytes_checked", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_table(
        "audit_finding",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("run_id", sa.Uuid(), sa.ForeignKey("audit_run.id"), nullable=False),
        sa.Column("archive_id", sa.Uuid(), nullable=False),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("document", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("problem", sa.String(32), nullable=False),
        sa.Column("found_sha256", sa.String(64), nullable=True),
        sa.Column("found_sha512", sa.String(128), nullable=True),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_finding_run_id", "audit_finding", ["run_id"])

    rules = op.create_table(
        "retention_rule",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("appraisal_rule", sa.String(64), nullable=False),
        sa.Column("duration_years", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.String(16), nullable=False),
        sa.Column("final_action", sa.String(16), nullable=False),
        sa.Column("access_rule", sa.String(64), nullable=False),
        sa.Column("access_years", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
    )
    now = datetime.now(UTC)
    names = ("kind", "appraisal_rule", "duration_years", "start_date", "final_action")
    names += ("access_rule", "access_years")
    op.bulk_insert(rules, [dict(zip(names, row, strict=True), updated_at=now) for row in _RULES])

    op.create_table(
        "elimination_proposal",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
    )
    op.create_index(
        "ix_elimination_proposal_siren", "elimination_proposal", ["siren", "proposed_at"]
    )
    op.create_table(
        "archive_retention",
        sa.Column("archive_id", sa.Uuid(), sa.ForeignKey("archive.id"), primary_key=True),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "proposal_id", sa.Uuid(), sa.ForeignKey("elimination_proposal.id"), nullable=False
        ),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged", sa.Boolean(), nullable=False),
        sa.Column("removed", sa.JSON(), nullable=False),
    )
    op.create_index("ix_archive_retention_siren_state", "archive_retention", ["siren", "state"])
    op.create_index("ix_archive_retention_proposal_id", "archive_retention", ["proposal_id"])


def downgrade() -> None:
    for table in (
        "archive_retention",
        "elimination_proposal",
        "retention_rule",
        "audit_finding",
        "audit_run",
        "logbook_seal",
        "logbook_entry",
    ):
        op.drop_table(table)
