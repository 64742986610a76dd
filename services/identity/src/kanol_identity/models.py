"""identity's data: organisations, subscriptions, agents, API clients and signing keys.

Each concept comes as a family: ``...Base`` (shared fields), ``...Create`` (what a caller
sends), ``...Public`` (what the API answers) and the table, so the API never shows a
column it should not (a password or secret hash, a TOTP secret, a private key).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import AnyUrl, EmailStr, StringConstraints, field_validator
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
)
from sqlmodel import Field, SQLModel

from kanol_common.db import as_utc
from kanol_common.siren import is_valid_siren

# ACTES département codes: 001-095 (no 020 since Corsica split into 02A and 02B), 971-976.
DEPARTEMENT_PATTERN = r"^(0(0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5])|97[1-6])$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{2,99}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- services, scopes and roles ------------------------------------------------------------


class Service(StrEnum):
    """The bouquet of services an organisation subscribes to."""

    ACTES = "actes"
    PES = "pes"
    ARCHIVE = "archive"
    GED = "ged"
    ADS = "ads"
    CERTIFICATES = "certificates"


# A scope "<service>:<verb>" may be granted only to an organisation subscribed to <service>.
SERVICE_SCOPES: dict[Service, tuple[str, ...]] = {
    service: (f"{service.value}:write", f"{service.value}:read") for service in Service
}
# Elimination decisions in the archive (the archivist's role).
SERVICE_SCOPES[Service.ARCHIVE] += ("archive:archivist",)
# Administers one's own organisation (its agents and API clients) through the admin API.
ORG_ADMIN_SCOPE = "org:admin"
# The syndicate's operators: every organisation. Only an operator may grant it.
OPERATOR_SCOPE = "identity:admin"
# Services reading each other's documents (claim check). Only an operator may grant it.
DOCUMENTS_SCOPE = "documents:read"
# The platform's operators changing the archive's retention rules.
ARCHIVE_ADMIN_SCOPE = "archive:admin"
PLATFORM_SCOPES: tuple[str, ...] = (OPERATOR_SCOPE, DOCUMENTS_SCOPE, ARCHIVE_ADMIN_SCOPE)

KNOWN_SCOPES: tuple[str, ...] = (
    *(scope for scopes in SERVICE_SCOPES.values() for scope in scopes),
    ORG_ADMIN_SCOPE,
    *PLATFORM_SCOPES,
)


def scope_service(scope: str) -> Service | None:
    """The service a scope belongs to, or None for a scope tied to no subscription."""
    if scope in PLATFORM_SCOPES:
        return None
    prefix = scope.partition(":")[0]
    return Service(prefix) if prefix in Service.__members__.values() else None


class Role(StrEnum):
    """What an agent may do, per service; an agent's token scopes follow from its roles."""

    ORG_ADMIN = "org:admin"
    ACTES_SUBMITTER = "actes:submitter"
    ACTES_READER = "actes:reader"
    PES_SUBMITTER = "pes:submitter"
    PES_READER = "pes:reader"
    ARCHIVE_ARCHIVIST = "archive:archivist"
    ARCHIVE_READER = "archive:reader"
    GED_USER = "ged:user"
    ADS_INSTRUCTOR = "ads:instructor"
    ADS_READER = "ads:reader"
    CERTIFICATES_REQUESTER = "certificates:requester"

    @property
    def service(self) -> Service | None:
        return scope_service(self.value)


ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    Role.ORG_ADMIN: (ORG_ADMIN_SCOPE,),
    Role.ACTES_SUBMITTER: ("actes:write", "actes:read"),
    Role.ACTES_READER: ("actes:read",),
    Role.PES_SUBMITTER: ("pes:write", "pes:read"),
    Role.PES_READER: ("pes:read",),
    Role.ARCHIVE_ARCHIVIST: ("archive:write", "archive:read", "archive:archivist"),
    Role.ARCHIVE_READER: ("archive:read",),
    Role.GED_USER: ("ged:write", "ged:read"),
    Role.ADS_INSTRUCTOR: ("ads:write", "ads:read"),
    Role.ADS_READER: ("ads:read",),
    Role.CERTIFICATES_REQUESTER: ("certificates:write", "certificates:read"),
}


def scopes_for_roles(roles: list[str], services: set[str]) -> tuple[str, ...]:
    """The scopes an agent's roles give, keeping only the services its organisation has."""
    scopes: set[str] = set()
    for role in roles:
        if role not in Role.__members__.values():
            continue
        service = Role(role).service
        if service is not None and service.value not in services:
            continue
        scopes.update(ROLE_SCOPES[Role(role)])
    return tuple(sorted(scopes))


# -- organisations -------------------------------------------------------------------------


class OrganisationKind(StrEnum):
    REGION = "region"
    DEPARTEMENT = "departement"
    EPCI = "epci"
    COMMUNE = "commune"
    CCAS = "ccas"
    SYNDICAT = "syndicat"
    REGIE = "regie"
    AUTRE = "autre"


# Which kinds may have a parent, and of which kind: a commune belongs to its EPCI; a CCAS
# to its commune, a CIAS (stored as kind ccas) to its EPCI.
PARENT_KINDS: dict[OrganisationKind, tuple[OrganisationKind, ...]] = {
    OrganisationKind.COMMUNE: (OrganisationKind.EPCI,),
    OrganisationKind.CCAS: (OrganisationKind.COMMUNE, OrganisationKind.EPCI),
}

Departement = Annotated[str, StringConstraints(pattern=DEPARTEMENT_PATTERN)]
Siren = Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]
# The two other attributes of an organisation's identifier in the ACTES envelope (IDCL).
Arrondissement = Annotated[int, Interval(ge=0, le=9)]
NatureCollectivite = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")]


def _checked_siren(siren: str | None) -> str | None:
    if siren is not None and not is_valid_siren(siren):
        raise ValueError("not a valid SIREN (9 digits with a Luhn checksum)")
    return siren


class OrganisationBase(SQLModel):
    siren: str = Field(min_length=9, max_length=9, description="9 digits, Luhn checksum")
    name: str = Field(min_length=1, max_length=255)
    kind: OrganisationKind
    departement: Departement = Field(description="ACTES 3-character code, e.g. 035, 02A, 974")
    parent_siren: Siren | None = Field(
        default=None,
        description="A commune's EPCI; a CCAS's commune or a CIAS's EPCI; nothing otherwise",
    )
    arrondissement: Arrondissement | None = Field(
        default=None,
        description="Its arrondissement in the ACTES envelope (IDCL), as its prefecture's "
        "convention gives it; absent: the platform's default",
    )
    nature_collectivite: NatureCollectivite | None = Field(
        default=None,
        description="Its nature code in the ACTES envelope (IDCL, 2 digits), as its "
        "prefecture's convention gives it; absent: the platform's default",
    )


class OrganisationCreate(OrganisationBase):
    @field_validator("siren", "parent_siren")
    @classmethod
    def _siren_checksum(cls, siren: str | None) -> str | None:
        return _checked_siren(siren)


class OrganisationUpdate(SQLModel):
    """The fields to change; absent fields stay. ``parent_siren: null`` detaches."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    kind: OrganisationKind | None = None
    departement: Departement | None = None
    parent_siren: Siren | None = None
    arrondissement: Arrondissement | None = None
    nature_collectivite: NatureCollectivite | None = None

    @field_validator("parent_siren")
    @classmethod
    def _siren_checksum(cls, siren: str | None) -> str | None:
        return _checked_siren(siren)


class EffectiveSubscription(SQLModel):
    service: Service
    granted_by: str = Field(description="The SIREN whose subscription this is (own or EPCI)")


class OrganisationPublic(OrganisationBase):
    subscriptions: list[Service] = Field(default_factory=list, description="Its own")
    effective_subscriptions: list[EffectiveSubscription] = Field(
        default_factory=list, description="Its own and those inherited from its EPCI"
    )
    created_at: datetime
    updated_at: datetime | None = None


class Organisation(SQLModel, table=True):
    __tablename__ = "organisation"

    id: int | None = Field(default=None, primary_key=True)
    siren: str = Field(sa_column=Column(String(9), unique=True, nullable=False))
    name: str = Field(sa_column=Column(String(255), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    departement: str = Field(sa_column=Column(String(3), nullable=False))
    parent_siren: str | None = Field(
        default=None,
        sa_column=Column(String(9), ForeignKey("organisation.siren"), nullable=True, index=True),
    )
    arrondissement: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    nature_collectivite: str | None = Field(
        default=None, sa_column=Column(String(2), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Subscription(SQLModel, table=True):
    """An organisation's own subscription to one service."""

    __tablename__ = "subscription"
    __table_args__ = (PrimaryKeyConstraint("siren", "service", name="pk_subscription"),)

    siren: str = Field(
        sa_column=Column(String(9), ForeignKey("organisation.siren"), nullable=False)
    )
    service: str = Field(sa_column=Column(String(32), nullable=False))
    subscribed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SubscriptionsPut(SQLModel):
    """The organisation's own subscriptions, as a whole: absent services are unsubscribed."""

    services: list[Service]


class SubscriptionsPublic(SQLModel):
    siren: str
    subscriptions: list[Service]
    effective_subscriptions: list[EffectiveSubscription]


# -- agents --------------------------------------------------------------------------------

Password = Annotated[str, StringConstraints(min_length=12, max_length=256)]


class AgentCreate(SQLModel):
    login: EmailStr = Field(description="The agent's e-mail address, its login")
    display_name: str = Field(min_length=1, max_length=255)
    password: Password
    roles: list[Role] = Field(default_factory=list)


class AgentUpdate(SQLModel):
    """The fields to change; absent fields stay."""

    display_name: str | None = Field(default=None, min_length=1, max_length=255)
    password: Password | None = None
    roles: list[Role] | None = None


class AgentPublic(SQLModel):
    id: str
    siren: str
    login: str
    display_name: str
    roles: list[str]
    active: bool
    totp_enabled: bool
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None = None


class TotpEnrolment(SQLModel):
    """Shown once when a second factor is enrolled: what the authenticator app needs."""

    secret: str
    provisioning_uri: str


class TotpCode(SQLModel):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


def new_agent_id() -> str:
    return str(uuid.uuid4())


class Agent(SQLModel, table=True):
    """A person's account under an organisation.

    ``active`` false ends the agent's sessions: the login, refresh, introspection and
    userinfo endpoints check it on every call. ``deactivated_at`` is the last deactivation
    and stays after a reactivation: what was issued before it stays void
    (:meth:`honours`). ``totp_secret`` is set at enrolment and used for logins only
    once ``totp_confirmed`` (the agent proved its app computes the same codes);
    ``totp_last_step`` is the time step of the last accepted code, so a code is not
    accepted twice.
    """

    __tablename__ = "agent"

    id: str = Field(default_factory=new_agent_id, sa_column=Column(String(36), primary_key=True))
    organisation_id: int = Field(
        sa_column=Column(Integer, ForeignKey("organisation.id"), nullable=False, index=True)
    )
    siren: str = Field(sa_column=Column(String(9), nullable=False, index=True))
    login: str = Field(sa_column=Column(String(254), unique=True, nullable=False))
    display_name: str = Field(sa_column=Column(String(255), nullable=False))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False))
    totp_secret: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    totp_confirmed: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    totp_last_step: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    deactivated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    def honours(self, issued_at: datetime) -> bool:
        """Whether a session or token issued at ``issued_at`` still stands for this agent:
        the agent is active and it was issued after the agent's last deactivation.

        An access token's ``iat`` counts whole seconds: one issued in the second of a
        deactivation, even just after a reactivation, reads as older and is refused; the
        agent signs in again.
        """
        if not self.active:
            return False
        if self.deactivated_at is None:
            return True
        return as_utc(issued_at) > as_utc(self.deactivated_at)

    @property
    def totp_enabled(self) -> bool:
        return self.totp_secret is not None and self.totp_confirmed

    def public(self) -> AgentPublic:
        return AgentPublic.model_validate({**self.model_dump(), "totp_enabled": self.totp_enabled})


# -- API clients ---------------------------------------------------------------------------


class ClientAuthMethod(StrEnum):
    """How a client proves itself at the token endpoint."""

    # A shared secret, by HTTP Basic or in the form (client_secret_basic / _post).
    CLIENT_SECRET = "client_secret"
    # A JWT signed with the client's private key (RFC 7523), checked against ``jwks``.
    PRIVATE_KEY_JWT = "private_key_jwt"


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def _checked_redirect_uris(uris: list[AnyUrl] | None) -> list[AnyUrl] | None:
    """HTTPS, or HTTP on the loopback for native apps (RFC 8252 §7.3); never a fragment."""
    for uri in uris or ():
        if uri.fragment is not None:
            raise ValueError(f"a redirect URI has no fragment: {uri}")
        if uri.scheme == "https" or (uri.scheme == "http" and uri.host in _LOOPBACK_HOSTS):
            continue
        raise ValueError(f"a redirect URI must be https (or http on the loopback): {uri}")
    return uris


class ApiClientCreate(SQLModel):
    client_id: Annotated[str, StringConstraints(pattern=CLIENT_ID_PATTERN)] | None = Field(
        default=None, description="Chosen by the operator, or generated when absent"
    )
    name: str | None = Field(default=None, max_length=255, description="The software's name")
    scopes: list[str] = Field(min_length=1)
    auth_method: ClientAuthMethod = ClientAuthMethod.CLIENT_SECRET
    jwks: dict[str, Any] | None = Field(
        default=None, description="private_key_jwt: the client's public keys as a JWK set"
    )
    public_key_pem: str | None = Field(
        default=None, description="private_key_jwt: one public key in PEM, instead of jwks"
    )
    redirect_uris: list[AnyUrl] = Field(
        default_factory=list, description="For the authorisation code flow"
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(KNOWN_SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {' '.join(unknown)}")
        return sorted(set(scopes))

    @field_validator("redirect_uris")
    @classmethod
    def _redirect_uris(cls, uris: list[AnyUrl]) -> list[AnyUrl]:
        return _checked_redirect_uris(uris) or []


class ApiClientUpdate(SQLModel):
    """The fields to change; absent fields stay."""

    name: str | None = Field(default=None, max_length=255)
    scopes: list[str] | None = Field(default=None, min_length=1)
    jwks: dict[str, Any] | None = None
    public_key_pem: str | None = None
    redirect_uris: list[AnyUrl] | None = None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str] | None) -> list[str] | None:
        if scopes is None:
            return None
        return ApiClientCreate._known_scopes(scopes)

    @field_validator("redirect_uris")
    @classmethod
    def _redirect_uris(cls, uris: list[AnyUrl] | None) -> list[AnyUrl] | None:
        return _checked_redirect_uris(uris)


class ApiClientPublic(SQLModel):
    client_id: str
    siren: str
    name: str | None = None
    scopes: list[str]
    auth_method: ClientAuthMethod = ClientAuthMethod.CLIENT_SECRET
    jwks: dict[str, Any] | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime | None = None
    secret_rotated_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiClientCreated(ApiClientPublic):
    """The answer to a registration or a secret rotation: the only time a secret is shown.

    ``client_secret`` is null for a ``private_key_jwt`` client.
    """

    client_secret: str | None = None


class ApiClient(SQLModel, table=True):
    """Software of an organisation (or a Kanol service) that gets tokens.

    A ``client_secret`` client has ``secret_hash`` (Argon2id) and no ``jwks``; a
    ``private_key_jwt`` client has ``jwks`` (public keys only) and no ``secret_hash``.
    """

    __tablename__ = "api_client"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(sa_column=Column(String(100), unique=True, nullable=False))
    siren: str = Field(
        sa_column=Column(String(9), ForeignKey("organisation.siren"), nullable=False, index=True)
    )
    name: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    auth_method: str = Field(
        default=ClientAuthMethod.CLIENT_SECRET.value,
        sa_column=Column(String(32), nullable=False),
    )
    secret_hash: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    jwks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    redirect_uris: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scopes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    secret_rotated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )

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
