"""Events published by actes-pes on ``pes.events``: the life of a PES V2 flow.

A flow (``PES_Aller``) is posted, transmitted to Hélios, then acknowledged or refused by
the accountant's acknowledgement (``PES_ACQUIT``); later returns (``PES_Retour``) carry
payment information. Documents travel as references (claim checks), never as bytes.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from kanol_common.events.base import DocumentRef, EventData

TOPIC = "pes.events"

SIREN_PATTERN = r"^[0-9]{9}$"
SIRET_PATTERN = r"^[0-9]{14}$"


class PesAckError(BaseModel):
    """One error of a refusing acknowledgement, as ``ElementACQUIT/.../Erreur`` gives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1, description="Rank of the error in the acknowledgement, from 1")
    code: str = Field(description="NumAnoAck, e.g. ERREUR_DOUBLON_PIECE")
    label: str = Field(description="LibelleAnoAck, the accountant's wording")
    domaine: str = Field(description="DomaineAck of the element the error belongs to")
    piece: str | None = Field(default=None, description="NumPiece when the error is a piece's")


class PesFlowSubmitted(EventData):
    """An authority's software posted a PES_Aller flow; it waits for transmission."""

    event_type = "fr.kanol.pes.flow.submitted.v1"
    topic = TOPIC

    flow_id: str = Field(description="Kanol's id of the flow (UUID)")
    siren: str = Field(pattern=SIREN_PATTERN)
    id_coll: str = Field(pattern=SIRET_PATTERN, description="EnTetePES/IdColl (SIRET)")
    nom_fic: str = Field(description="Enveloppe/Parametres/NomFic")
    cod_col: str
    cod_bud: str
    id_post: str = Field(description="EnTetePES/IdPost, the accounting post")
    signed: bool = Field(description="Whether the flow carried a verified XML signature")
    submitted_at: datetime
    documents: tuple[DocumentRef, ...]


class PesFlowTransmitted(EventData):
    """Hélios's gateway accepted the flow."""

    event_type = "fr.kanol.pes.flow.transmitted.v1"
    topic = TOPIC

    flow_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    nom_fic: str
    helios_id: str = Field(description="The gateway's id of the deposit")
    transmitted_at: datetime


class PesFlowAcknowledged(EventData):
    """Hélios answered with an accepting acknowledgement (PES_ACQUIT, every EtatAck 1)."""

    event_type = "fr.kanol.pes.flow.acknowledged.v1"
    topic = TOPIC

    flow_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    id_coll: str = Field(pattern=SIRET_PATTERN)
    nom_fic: str
    cod_col: str
    cod_bud: str
    id_post: str
    date_ack: date = Field(description="EnTetePES/DteStr of the PES_ACQUIT")
    acknowledged_at: datetime
    documents: tuple[DocumentRef, ...] = Field(
        description="The flow (role pes_aller) and its acknowledgement (role pes_acquit)"
    )


class PesFlowRefused(EventData):
    """Hélios answered with a refusing acknowledgement (an EtatAck 0), with its errors."""

    event_type = "fr.kanol.pes.flow.refused.v1"
    topic = TOPIC

    flow_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    id_coll: str = Field(pattern=SIRET_PATTERN)
    nom_fic: str
    errors: tuple[PesAckError, ...]
    refused_at: datetime
    documents: tuple[DocumentRef, ...] = Field(
        description="The flow (role pes_aller) and its acknowledgement (role pes_acquit)"
    )


class PesFlowAcquitOverdue(EventData):
    """A flow Hélios took has had no acknowledgement (PES_ACQUIT) for longer than allowed."""

    event_type = "fr.kanol.pes.flow.acquit_overdue.v1"
    topic = TOPIC

    flow_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    id_coll: str = Field(pattern=SIRET_PATTERN)
    nom_fic: str
    transmitted_at: datetime
    overdue_since: datetime
    allowed_seconds: float


class PesFlowTransmissionStuck(EventData):
    """A flow is still not taken by Hélios (the gateway unreachable) beyond the allowed delay."""

    event_type = "fr.kanol.pes.flow.transmission_stuck.v1"
    topic = TOPIC

    flow_id: str
    siren: str = Field(pattern=SIREN_PATTERN)
    id_coll: str = Field(pattern=SIRET_PATTERN)
    nom_fic: str
    transmitting_since: datetime
    attempts: int
    last_error: str | None = None


class PesRetourReceived(EventData):
    """A later return (PES_Retour) was fetched from Hélios for an organisation."""

    event_type = "fr.kanol.pes.retour.received.v1"
    topic = TOPIC

    retour_id: str = Field(description="Kanol's id of the return (UUID)")
    siren: str = Field(pattern=SIREN_PATTERN)
    id_coll: str = Field(pattern=SIRET_PATTERN)
    nom_fic: str = Field(description="NomFic of the PES_Retour")
    received_at: datetime
    documents: tuple[DocumentRef, ...] = Field(description="The return (role pes_retour)")
