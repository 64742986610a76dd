"""Events published by identity on ``identity.events``."""

from __future__ import annotations

from pydantic import Field

from kanol_common.events.base import EventData

TOPIC = "identity.events"

SIREN_PATTERN = r"^[0-9]{9}$"


class OrganisationRegistered(EventData):
    """An organisation (collectivité, EPCI, syndicat...) was registered on the platform."""

    event_type = "fr.kanol.identity.organisation.registered.v1"
    topic = TOPIC

    siren: str = Field(pattern=SIREN_PATTERN)
    name: str
    kind: str
    departement: str = Field(pattern=r"^[0-9]{2}[0-9AB]$", description="ACTES 3-char code")


class ApiClientRegistered(EventData):
    """An API client was registered for an organisation, with the scopes it may ask for."""

    event_type = "fr.kanol.identity.api_client.registered.v1"
    topic = TOPIC

    client_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    scopes: tuple[str, ...]
