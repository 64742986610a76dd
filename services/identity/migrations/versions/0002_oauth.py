"""The authorisation server: codes, refresh tokens, revocations, client assertions, login
sessions and the brute-force throttle.

Revision ID: 0002_oauth
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_oauth"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _moment(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "authorization_code",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(255), nullable=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        _moment("auth_time"),
        _moment("created_at"),
        _moment("expires_at"),
        _moment("used_at", nullable=True),
    )
    op.create_index("ix_authorization_code_expires_at", "authorization_code", ["expires_at"])

    op.create_table(
        "refresh_token",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        _moment("auth_time"),
        _moment("issued_at"),
        _moment("expires_at"),
        _moment("family_expires_at"),
        _moment("used_at", nullable=True),
        _moment("revoked_at", nullable=True),
    )
    op.create_index("ix_refresh_token_family_id", "refresh_token", ["family_id"])
    op.create_index("ix_refresh_token_client_id", "refresh_token", ["client_id"])
    op.create_index("ix_refresh_token_agent_id", "refresh_token", ["agent_id"])
    op.create_index("ix_refresh_token_expires_at", "refresh_token", ["expires_at"])

    op.create_table(
        "revoked_access_token",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(100), nullable=False),
        _moment("expires_at"),
        _moment("revoked_at"),
    )
    op.create_index("ix_revoked_access_token_expires_at", "revoked_access_token", ["expires_at"])

    op.create_table(
        "client_assertion_use",
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        _moment("expires_at"),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_client_assertion_use"),
    )
    op.create_index("ix_client_assertion_use_expires_at", "client_assertion_use", ["expires_at"])

    op.create_table(
        "login_session",
        sa.Column("session_hash", sa.String(64), primary_key=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=True),
        _moment("created_at"),
        _moment("expires_at"),
        _moment("authenticated_at", nullable=True),
    )
    op.create_index("ix_login_session_expires_at", "login_session", ["expires_at"])

    op.create_table(
        "throttle",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        _moment("last_failure_at"),
        _moment("blocked_until", nullable=True),
    )
    op.create_index("ix_throttle_blocked_until", "throttle", ["blocked_until"])


def downgrade() -> None:
    for table in (
        "throttle",
        "login_session",
        "client_assertion_use",
        "revoked_access_token",
        "refresh_token",
        "authorization_code",
    ):
        op.drop_table(table)
