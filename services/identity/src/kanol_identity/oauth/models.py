"""The authorisation server's own tables: codes, refresh tokens, revocations, sessions.

Every secret handed to a client or a browser (code, refresh token, session id) is stored as
its SHA-256 only: they are long random strings, so a fast hash is enough, and a copy of the
database hands out nothing that works.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, PrimaryKeyConstraint, String, Text
from sqlmodel import Field, SQLModel


def digest(secret: str) -> str:
    """How a code, a refresh token or a session id is stored and looked up."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _moment(*, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class AuthorizationCode(SQLModel, table=True):
    """A code handed to a client's redirect_uri, redeemable once with its PKCE verifier.

    ``family_id`` names the refresh token family its exchange starts, so that a code
    presented a second time can revoke what the first exchange issued (RFC 6749 §4.1.2).
    """

    __tablename__ = "authorization_code"

    code_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    agent_id: str = Field(sa_column=Column(String(36), nullable=False))
    redirect_uri: str = Field(sa_column=Column(Text, nullable=False))
    scopes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    code_challenge: str = Field(sa_column=Column(String(128), nullable=False))
    nonce: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    family_id: str = Field(sa_column=Column(String(36), nullable=False))
    auth_time: datetime = Field(sa_column=_moment())
    created_at: datetime = Field(sa_column=_moment())
    expires_at: datetime = Field(sa_column=_moment(index=True))
    used_at: datetime | None = Field(default=None, sa_column=_moment(nullable=True))


class RefreshToken(SQLModel, table=True):
    """One refresh token of a family; each refresh uses one up and issues the next.

    A token presented again after its use (``used_at`` set) means it leaked: the whole
    family is revoked, the thief's copy and the agent's alike.
    """

    __tablename__ = "refresh_token"

    token_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    family_id: str = Field(sa_column=Column(String(36), nullable=False, index=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False, index=True))
    agent_id: str = Field(sa_column=Column(String(36), nullable=False, index=True))
    scopes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    auth_time: datetime = Field(sa_column=_moment())
    issued_at: datetime = Field(sa_column=_moment())
    expires_at: datetime = Field(sa_column=_moment(index=True))
    # The family may not outlive this, however often it is refreshed.
    family_expires_at: datetime = Field(sa_column=_moment())
    used_at: datetime | None = Field(default=None, sa_column=_moment(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_moment(nullable=True))


class RevokedAccessToken(SQLModel, table=True):
    """An access token revoked before its expiry (RFC 7009); introspection reads this."""

    __tablename__ = "revoked_access_token"

    jti: str = Field(sa_column=Column(String(64), primary_key=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    expires_at: datetime = Field(sa_column=_moment(index=True))
    revoked_at: datetime = Field(sa_column=_moment())


class ClientAssertionUse(SQLModel, table=True):
    """A private_key_jwt assertion already accepted: its jti may not be used again."""

    __tablename__ = "client_assertion_use"
    __table_args__ = (PrimaryKeyConstraint("client_id", "jti", name="pk_client_assertion_use"),)

    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    jti: str = Field(sa_column=Column(String(255), nullable=False))
    expires_at: datetime = Field(sa_column=_moment(index=True))


class LoginSession(SQLModel, table=True):
    """A browser's session at the login page, named by its cookie.

    ``stage`` moves from ``anonymous`` to ``totp`` (password accepted, second factor due)
    to ``authenticated``. The agent's ``active`` flag is checked again at every use.
    """

    __tablename__ = "login_session"

    session_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    stage: str = Field(sa_column=Column(String(16), nullable=False))
    agent_id: str | None = Field(default=None, sa_column=Column(String(36), nullable=True))
    created_at: datetime = Field(sa_column=_moment())
    expires_at: datetime = Field(sa_column=_moment(index=True))
    authenticated_at: datetime | None = Field(default=None, sa_column=_moment(nullable=True))


class Consent(SQLModel, table=True):
    """What an agent allowed an application once: the login does not ask again for these
    scopes, unless the application asks with ``prompt=consent``."""

    __tablename__ = "consent"
    __table_args__ = (PrimaryKeyConstraint("agent_id", "client_id", name="pk_consent"),)

    agent_id: str = Field(sa_column=Column(String(36), nullable=False))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    scopes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    granted_at: datetime = Field(sa_column=_moment())


class FamilyAccessToken(SQLModel, table=True):
    """An access token issued to an agent's login (its refresh token family), kept until
    it expires: revoking the family (a code or refresh token used twice, a deactivation)
    revokes it too, at introspection and at the services."""

    __tablename__ = "family_access_token"

    jti: str = Field(sa_column=Column(String(64), primary_key=True))
    family_id: str = Field(sa_column=Column(String(36), nullable=False, index=True))
    client_id: str = Field(sa_column=Column(String(100), nullable=False))
    siren: str = Field(sa_column=Column(String(9), nullable=False))
    expires_at: datetime = Field(sa_column=_moment(index=True))
