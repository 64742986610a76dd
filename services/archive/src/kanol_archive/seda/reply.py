"""The archive's answer to a transfer: the ``ArchiveTransferReply`` (ATR).

An ATR says OK (the archive took the transfer in charge, and when: ``GrantDate``) or KO,
with one ``Operation/Event`` per check made, each with its outcome and, for a failure, the
reason in words. It is the sender's proof of deposit, or the list of what to fix.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from kanol_archive.seda.manifest import SedaWriter, xml_datetime
from kanol_archive.seda.schema import SedaVersion, serialize

# The event type codes of the ingest's checks, in Vitam's spelling where it has one.
CHECK_SEDA: Final = "CHECK_SEDA"
CHECK_HEADER: Final = "CHECK_HEADER"
CHECK_AGENCIES: Final = "CHECK_AGENCIES"
CHECK_DIGEST: Final = "CHECK_DIGEST"
CHECK_OBJECT_SIZE: Final = "CHECK_OBJECT_SIZE"
CHECK_MANIFEST_OBJECTNUMBER: Final = "CHECK_MANIFEST_OBJECTNUMBER"
CHECK_CONTAINER: Final = "CHECK_CONTAINER"
STORAGE: Final = "STORAGE_AVAILABILITY_CHECK"
ATR_NOTIFICATION: Final = "ATR_NOTIFICATION"

EVENT_LABELS: Final = {
    CHECK_SEDA: "Vérification globale du bordereau (schéma SEDA)",
    CHECK_HEADER: "Vérification de l'en-tête du bordereau",
    CHECK_AGENCIES: "Vérification des services producteur et versant",
    CHECK_DIGEST: "Vérification de l'empreinte des objets",
    CHECK_OBJECT_SIZE: "Vérification de la taille des objets",
    CHECK_MANIFEST_OBJECTNUMBER: "Vérification du nombre d'objets",
    CHECK_CONTAINER: "Vérification du conteneur du versement",
    STORAGE: "Écriture des objets sur les offres de stockage",
    ATR_NOTIFICATION: "Notification de la réponse au versement",
}


class ReplyCode(enum.StrEnum):
    OK = "OK"
    KO = "KO"


@dataclass(frozen=True)
class ReplyEvent:
    """One check of the ingest, with what it found."""

    type_code: str
    outcome: ReplyCode
    at: datetime
    detail: str | None = None
    object_id: str | None = None

    @property
    def outcome_detail(self) -> str:
        return f"{self.type_code}.{self.outcome}"


@dataclass(frozen=True)
class TransferReply:
    message_identifier: str
    date: datetime
    request_identifier: str
    code: ReplyCode
    events: tuple[ReplyEvent, ...]
    archival_agency: str
    transferring_agency: str
    grant_date: datetime | None = None
    comment: str | None = None

    @property
    def reasons(self) -> list[str]:
        """Every failed check in words, as the ATR's KO events say it."""
        return [
            f"{event.type_code}: {event.detail}"
            for event in self.events
            if event.outcome is ReplyCode.KO and event.detail
        ]


def reply_bytes(reply: TransferReply, version: SedaVersion) -> bytes:
    """The ATR as UTF-8 XML, valid against the SEDA schema of ``version``."""
    writer = SedaWriter(version)
    root = writer.root("ArchiveTransferReply")
    writer.add_optional(root, "Comment", reply.comment)
    writer.add(root, "Date", xml_datetime(reply.date))
    writer.add(root, "MessageIdentifier", reply.message_identifier)
    writer.code_list_versions(root, ("ReplyCodeListVersion",))
    writer.add(root, "ReplyCode", reply.code.value)

    operation = writer.add(root, "Operation")
    for event in reply.events:
        element = writer.add(operation, "Event")
        writer.add_optional(element, "EventIdentifier", event.object_id)
        writer.add(element, "EventTypeCode", event.type_code)
        writer.add(element, "EventType", EVENT_LABELS.get(event.type_code, event.type_code))
        writer.add(element, "EventDateTime", xml_datetime(event.at))
        writer.add(element, "Outcome", event.outcome.value)
        writer.add(element, "OutcomeDetail", event.outcome_detail)
        writer.add_optional(element, "OutcomeDetailMessage", _token(event.detail))

    writer.add(root, "MessageRequestIdentifier", reply.request_identifier)
    if reply.grant_date is not None:
        writer.add(root, "GrantDate", xml_datetime(reply.grant_date))
    writer.organisation(root, "ArchivalAgency", reply.archival_agency)
    writer.organisation(root, "TransferringAgency", reply.transferring_agency)
    return serialize(root, version)


def checks_passed(type_codes: Sequence[str], at: datetime) -> list[ReplyEvent]:
    return [ReplyEvent(code, ReplyCode.OK, at) for code in type_codes]


def _token(text: str | None) -> str | None:
    # OutcomeDetailMessage is a token: no line breaks, no runs of spaces, not empty.
    if text is None:
        return None
    return " ".join(text.split())[:2000] or None
