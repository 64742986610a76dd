"""identity's directory: organisation parents, subscriptions, agents, API client keys.

Revision ID: 0002_directory
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_directory"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode, so SQLite (which cannot alter a column in place) copies the table.
    with op.batch_alter_table("organisation") as batch:
        batch.add_column(sa.Column("parent_siren", sa.String(9), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_organisation_parent", "organisation", ["parent_siren"], ["siren"]
        )
        batch.create_index("ix_organisation_parent_siren", ["parent_siren"])

    op.create_table(
        "subscription",
        sa.Column(
            "siren",
            sa.String(9),
            sa.ForeignKey("organisation.siren", name="fk_subscription_organisation"),
            nullable=False,
        ),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("subscribed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("siren", "service", name="pk_subscription"),
    )

    op.create_table(
        "agent",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organisation_id",
            sa.Integer(),
            sa.ForeignKey("organisation.id", name="fk_agent_organisation"),
            nullable=False,
        ),
        sa.Column("siren", sa.String(9), nullable=False),
        sa.Column("login", sa.String(254), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_confirmed", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("login", name="uq_agent_login"),
    )
    op.create_index("ix_agent_organisation_id", "agent", ["organisation_id"])
    op.create_index("ix_agent_siren", "agent", ["siren"])

    with op.batch_alter_table("api_client") as batch:
        batch.add_column(sa.Column("name", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column(
                "auth_method",
                sa.String(32),
                nullable=False,
                server_default=sa.text("'client_secret'"),
            )
        )
        batch.add_column(sa.Column("jwks", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("redirect_uris", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("secret_rotated_at", sa.DateTime(timezone=True), nullable=True)
        )
        # A private_key_jwt client has no secret.
        batch.alter_column("secret_hash", existing_type=sa.String(255), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("api_client") as batch:
        batch.alter_column("secret_hash", existing_type=sa.String(255), nullable=False)
        batch.drop_column("secret_rotated_at")
        batch.drop_column("updated_at")
        batch.drop_column("redirect_uris")
        batch.drop_column("jwks")
        batch.drop_column("auth_method")
        batch.drop_column("name")

    op.drop_index("ix_agent_siren", table_name="agent")
    op.drop_index("ix_agent_organisation_id", table_name="agent")
    op.drop_table("agent")
    op.drop_table("subscription")

    with op.batch_alter_table("organisation") as batch:
        batch.drop_index("ix_organisation_parent_siren")
        batch.drop_constraint("fk_organisation_parent", type_="foreignkey")
        batch.drop_column("updated_at")
        batch.drop_column("parent_siren")
