"""Events published by actes-pes on ``actes.events``: the life of an acte."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from kanol_common.events.base import DocumentRef, EventData

TOPIC = "actes.events"


class ActeSubmitted(EventData):
    """An authority's software posted an acte; it waits for transmission."""

    event_type = "fr.kanol.actes.acte.submitted.v1"
    topic = TOPIC

    acte_id: str = Field(description="Kanol's id of the acte (UUID)")
    siren: str = Field(pattern=r"^[0-9]{9}$")
    numero_interne: str
    nature: int = Field(ge=1, le=6)
    matiere: str
    objet: str
    date_decision: date
    documents: tuple[DocumentRef, ...]


class ActeTransmitted(EventData):
    """The acte's transmission was accepted by the prefecture's gateway."""

    event_type = "fr.kanol.actes.acte.transmitted.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str = Field(description="{dept}-{SIREN}-{YYYYMMDD}-{NumeroInterne}-{nature}")
    transmitted_at: datetime


class ActeAcknowledged(EventData):
    """The prefecture answered with an accusé de réception (ARActe, message 1-2)."""

    event_type = "fr.kanol.actes.acte.acknowledged.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    numero_interne: str
    nature: int = Field(ge=1, le=6)
    matiere: str
    objet: str
    date_decision: date
    date_reception: date = Field(description="DateReception of the ARActe")
    acknowledged_at: datetime
    documents: tuple[DocumentRef, ...]


class ActeRefused(EventData):
    """The prefecture answered with an anomalie (message 1-3)."""

    event_type = "fr.kanol.actes.acte.refused.v1"
    topic = TOPIC

    acte_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    identifiant_acte: str
    nature_anomalie: str
    detail: str
    refused_at: datetime
