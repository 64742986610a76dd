"""identity's data: organisations, their API clients and the keys that sign access tokens.

Each concept comes as a family: ``...Base`` (shared fields), ``...Create`` (what a caller
sends), ``...Public`` (what the API answers) and the table, so the API never shows a
column it should not (a secret hash, a private key).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import StringConstraints, field_validator
from sqlalchemy import JSON, Column, DateTime, ForeignKey, String
from sqlmodel import Field, SQLModel

from kanol_common.siren import is_valid_siren

# ACTES département codes: 001-095 (no 020 since Corsica split into 02A and 02B), 971-976.
DEPARTEMENT_PATTERN = r"^(0(0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5])|97[1-6])$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{2,99}$"

KNOWN_SCOPES: tuple[str, ...] = (
    "actes:write",
    "actes:read",
    "archive:read",
    "documents:read",
    "identity:admin",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class OrganisationKind(StrEnum):
    REGION = "region"
    DEPARTEMENT = "departement"
    EPCI = "epci"
    COMMUNE = "commune"
    CCAS = "ccas"
    SYNDICAT = "syndicat"
    REGIE = "regie"
    AUTRE = "autre"


class OrganisationBase(SQLModel):
    siren: str = Field(min_length=9, max_length=9, description="9 digits, Luhn checksum")
    name: str = Field(min_length=1, max_length=255)
    kind: OrganisationKind
    departement: Annotated[str, StringConstraints(pattern=DEPARTEMENT_PATTERN)] = Field(
        description="ACTES 3-character code, e.g. 035, 02A, 974"
    )


class OrganisationCreate(OrganisationBase):
    @field_validator("siren")
    @classmethod
    def _siren_checksum(cls, siren: str) -> str:
        if not is_valid_siren(siren):
            raise ValueError("not a valid SIREN (9 digits with a Luhn checksum)")
        return siren


class OrganisationPublic(OrganisationBase):
    created_at: datetime


class Organisation(SQLModel, table=True):
    __tablename__ = "organisation"

    id: int | None = Field(default=None, primary_key=True)
    siren: str = Field(sa_column=Column(String(9), unique=True, nullable=False))
    name: str = Field(sa_column=Column(String(255), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    departement: str = Field(sa_column=Column(String(3), nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    def public(self) -> OrganisationPublic:
        return OrganisationPublic.model_validate(self, from_attributes=True)


class ApiClientCreate(SQLModel):
    client_id: Annotated[str, StringConstraints(pattern=CLIENT_ID_PATTERN)] | None = Field(
        default=None, description="Chosen by the operator, or generated when absent"
    )
    scopes: list[str] = Field(min_length=1)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(KNOWN_SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {' '.join(unknown)}")
        return sorted(set(scopes))


class ApiClientPublic(SQLModel):
    client_id: str
    siren: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class ApiClientCreated(ApiClientPublic):
    """The answer to a registration: the only time the secret is ever shown."""

    client_secret: str


class ApiClient(SQLModel, table=True):
    __tablename__ = "api_client"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(sa_column=Column(String(100), unique=True, nullable=False))
    siren: str = Field(
        sa_column=Column(String(9), ForeignKey("organisation.siren"), nullable=False, index=True)
    )
    secret_hash: str = Field(sa_column=Column(String(255), nullable=False))
    scopes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> ApiClientPublic:
        return ApiClientPublic.model_validate(self, from_attributes=True)


class SigningKey(SQLModel, table=True):
    """A key that signs access tokens.

    The private JWK sits in the database so that the embedded default needs nothing else;
    a production deployment should keep private keys in a KMS or a secret store and leave
    only the public part and the key's reference here.
    """

    __tablename__ = "signing_key"

    kid: str = Field(sa_column=Column(String(64), primary_key=True))
    algorithm: str = Field(sa_column=Column(String(10), nullable=False))
    private_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    retired_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )
