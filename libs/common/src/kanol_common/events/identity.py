"""Events published by identity on ``identity.events``.

Organisation and subscription events are keyed by the organisation's SIREN, so one
organisation's events stay in order on their partition (a projection relies on it); agent
events by the agent's id, API client events by the client id, a revoked access token's
event by its client id.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from kanol_common.events.base import EventData

TOPIC = "identity.events"

SIREN_PATTERN = r"^[0-9]{9}$"
DEPARTEMENT_PATTERN = r"^[0-9]{2}[0-9AB]$"
NATURE_COLLECTIVITE_PATTERN = r"^[0-9]{2}$"
ARRONDISSEMENT = "Arrondissement in the ACTES envelope (IDCL); absent: the platform's default"
NATURE_COLLECTIVITE = "Nature code in the ACTES envelope (IDCL); absent: the platform's default"


class OrganisationRegistered(EventData):
    """An organisation (collectivité, EPCI, syndicat...) was registered on the platform."""

    event_type = "fr.kanol.identity.organisation.registered.v1"
    topic = TOPIC

    siren: str = Field(pattern=SIREN_PATTERN)
    name: str
    kind: str
    departement: str = Field(pattern=DEPARTEMENT_PATTERN, description="ACTES 3-char code")
    parent_siren: str | None = Field(
        default=None,
        pattern=SIREN_PATTERN,
        description="A commune's EPCI, a CCAS's commune or a CIAS's EPCI",
    )
    arrondissement: int | None = Field(default=None, ge=0, le=9, description=ARRONDISSEMENT)
    nature_collectivite: str | None = Field(
        default=None, pattern=NATURE_COLLECTIVITE_PATTERN, description=NATURE_COLLECTIVITE
    )


class OrganisationUpdated(EventData):
    """An organisation's name, kind, département, parent or envelope codes changed; its whole
    new state."""

    event_type = "fr.kanol.identity.organisation.updated.v1"
    topic = TOPIC

    siren: str = Field(pattern=SIREN_PATTERN)
    name: str
    kind: str
    departement: str = Field(pattern=DEPARTEMENT_PATTERN, description="ACTES 3-char code")
    parent_siren: str | None = Field(default=None, pattern=SIREN_PATTERN)
    arrondissement: int | None = Field(default=None, ge=0, le=9, description=ARRONDISSEMENT)
    nature_collectivite: str | None = Field(
        default=None, pattern=NATURE_COLLECTIVITE_PATTERN, description=NATURE_COLLECTIVITE
    )


class EffectiveSubscription(BaseModel):
    """A service an organisation may use, and whose subscription gives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str = Field(description="actes, pes, archive, ged, ads or certificates")
    granted_by: str = Field(
        pattern=SIREN_PATTERN, description="The organisation's own SIREN, or its EPCI's"
    )


class SubscriptionsChanged(EventData):
    """The services an organisation may use changed: by its own subscriptions or its EPCI's.

    Carries the whole new state, so a consumer replaces what it holds.
    """

    event_type = "fr.kanol.identity.subscriptions.changed.v1"
    topic = TOPIC

    siren: str = Field(pattern=SIREN_PATTERN)
    subscriptions: tuple[str, ...] = Field(description="Its own subscriptions")
    effective: tuple[EffectiveSubscription, ...] = Field(
        description="Own and inherited, with where each comes from"
    )
    services: tuple[str, ...] = Field(description="The services of ``effective``, sorted")


class AgentProvisioned(EventData):
    """An agent's account was created under an organisation."""

    event_type = "fr.kanol.identity.agent.provisioned.v1"
    topic = TOPIC

    agent_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    roles: tuple[str, ...]


class AgentDeactivated(EventData):
    """An agent's account was deactivated: it can no longer sign in, its sessions end."""

    event_type = "fr.kanol.identity.agent.deactivated.v1"
    topic = TOPIC

    agent_id: str
    siren: str = Field(pattern=SIREN_PATTERN)


class AgentReactivated(EventData):
    """A deactivated agent's account was reactivated: it may sign in again, though nothing
    issued before its deactivation (sessions, refresh tokens) works again."""

    event_type = "fr.kanol.identity.agent.reactivated.v1"
    topic = TOPIC

    agent_id: str
    siren: str = Field(pattern=SIREN_PATTERN)


class ApiClientRegistered(EventData):
    """An API client was registered for an organisation, with the scopes it may ask for."""

    event_type = "fr.kanol.identity.api_client.registered.v1"
    topic = TOPIC

    client_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    scopes: tuple[str, ...]


class ApiClientRevoked(EventData):
    """An API client was revoked: identity issues it no token any more."""

    event_type = "fr.kanol.identity.api_client.revoked.v1"
    topic = TOPIC

    client_id: str
    siren: str = Field(pattern=SIREN_PATTERN)


class AccessTokenRevoked(EventData):
    """One access token was revoked before it expired (RFC 7009): the services refuse it
    from now on, though its signature still holds until ``expires_at``."""

    event_type = "fr.kanol.identity.access_token.revoked.v1"
    topic = TOPIC

    jti: str
    client_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    expires_at: datetime = Field(description="When the token would have expired anyway")
