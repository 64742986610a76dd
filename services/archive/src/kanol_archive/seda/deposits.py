"""What an acknowledged acte and an acknowledged PES flow become in SEDA.

An acte is one ``ArchiveUnit`` (level File) described by its metadata, holding one unit
(level Item) per document: the acte, its annexes, the envelope, the prefecture's ARActe,
the stamped PDF. A PES flow is one unit holding the flow and its acknowledgement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import quote

from kanol_archive.seda.manifest import (
    AccessRule,
    AppraisalRule,
    ArchiveUnitDescription,
    CustomMetadata,
    DataObject,
    Keyword,
    TransferDescription,
)
from kanol_archive.seda.rules import ACTE_NATURE_CODES, ACTE_NATURE_LABELS, DepositRules
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.events.pes import PesFlowAcknowledged

# The service agreements under which the platform deposits for the organisations.
ACTES_AGREEMENT = "KANOL-ACTES"
PES_AGREEMENT = "KANOL-PES"

ROLE_TITLES = {
    "acte": "Acte transmis",
    "annexe": "Annexe",
    "enveloppe": "Enveloppe de transmission (EnveloppeCLMISILL)",
    "message": "Message de transmission de l'acte (1-1)",
    "archive_transmission": "Archive de transmission à la préfecture",
    "ar_acte": "Accusé de réception de la préfecture (ARActe, 1-2)",
    "acte_tamponne": "Acte tamponné par l'accusé de réception",
    "pes_aller": "Flux PES_Aller",
    "pes_acquit": "Acquittement du comptable (PES_ACQUIT)",
}


def role_title(role: str) -> str:
    """What a document is, in words: ``annexe_2`` is "Annexe 2"."""
    prefix, _, number = role.partition("_")
    if prefix == "annexe" and number.isdigit():
        return f"Annexe {number}"
    return ROLE_TITLES.get(role, role)


@dataclass(frozen=True)
class DepositedObject:
    """A stored document, as the manifest describes it."""

    role: str
    filename: str
    media_type: str
    size: int
    sha512: str


@dataclass(frozen=True)
class Parties:
    """Who takes part in a deposit: the archive, and the organisation that sends."""

    message_identifier: str
    date: datetime
    archival_agency: str
    siren: str


def acte_transfer(
    acte: ActeAcknowledged,
    objects: Sequence[DepositedObject],
    rules: DepositRules,
    parties: Parties,
) -> TransferDescription:
    nature = ACTE_NATURE_LABELS.get(acte.nature, "Acte")
    unit = ArchiveUnitDescription(
        id="AU_ACTE",
        title=acte.objet,
        level="File",
        description=(
            f"{nature} n° {acte.numero_interne} du {acte.date_decision:%d/%m/%Y}, "
            f"transmis au contrôle de légalité sous l'identifiant {acte.identifiant_acte}, "
            f"reçu par la préfecture le {acte.date_reception:%d/%m/%Y}."
        ),
        document_type=nature,
        originating_identifier=acte.acte_id,
        keywords=(
            Keyword(nature, reference="nature"),
            Keyword(acte.matiere, reference="matiere"),
        ),
        start_date=acte.date_decision,
        end_date=acte.date_reception,
        custom=_acte_metadata(acte),
        children=_document_units(objects, _piece_types(acte)),
    )
    start = acte.date_reception
    return _transfer(
        parties,
        objects,
        unit,
        AppraisalRule(rules.appraisal_rule, start, rules.final_action),
        AccessRule(rules.access_rule, acte.date_decision),
        comment=f"Versement de l'acte {acte.identifiant_acte}",
        archival_agreement=ACTES_AGREEMENT,
    )


def pes_transfer(
    flow: PesFlowAcknowledged,
    objects: Sequence[DepositedObject],
    rules: DepositRules,
    parties: Parties,
) -> TransferDescription:
    unit = ArchiveUnitDescription(
        id="AU_PES",
        title=f"Flux comptable PES V2 {flow.nom_fic}",
        level="File",
        description=(
            f"Flux PES_Aller {flow.nom_fic} du budget {flow.cod_bud} de la collectivité "
            f"{flow.cod_col} (SIRET {flow.id_coll}), poste comptable {flow.id_post}, "
            f"acquitté par le comptable le {flow.date_ack:%d/%m/%Y}."
        ),
        document_type="Flux comptable PES V2",
        originating_identifier=flow.flow_id,
        keywords=(Keyword("PES V2", reference="flux"), Keyword(flow.cod_bud, reference="budget")),
        start_date=flow.date_ack,
        end_date=flow.date_ack,
        custom=(
            CustomMetadata("NomFic", flow.nom_fic),
            CustomMetadata("IdColl", flow.id_coll),
            CustomMetadata("CodCol", flow.cod_col),
            CustomMetadata("CodBud", flow.cod_bud),
            CustomMetadata("IdPost", flow.id_post),
            CustomMetadata("DateAcquit", flow.date_ack.isoformat()),
        ),
        children=_document_units(objects),
    )
    return _transfer(
        parties,
        objects,
        unit,
        AppraisalRule(rules.appraisal_rule, flow.date_ack, rules.final_action),
        AccessRule(rules.access_rule, flow.date_ack),
        comment=f"Versement du flux PES {flow.nom_fic}",
        archival_agreement=PES_AGREEMENT,
    )


def object_id(position: int) -> str:
    return f"BDO{position + 1}"


def _acte_metadata(acte: ActeAcknowledged) -> tuple[CustomMetadata, ...]:
    fields: list[tuple[str, str | None]] = [
        ("IdentifiantActe", acte.identifiant_acte),
        ("NumeroInterne", acte.numero_interne),
        ("Nature", str(acte.nature)),
        ("NatureCode", ACTE_NATURE_CODES.get(acte.nature, "AU")),
        ("Matiere", acte.matiere),
        ("Objet", acte.objet),
        ("DateDecision", acte.date_decision.isoformat()),
        ("DateReception", acte.date_reception.isoformat()),
        ("Departement", acte.departement),
        ("TypePiece", acte.type_piece),
        ("ClassificationDate", _iso(acte.classification_date)),
        ("DateTransmission", _iso(acte.transmitted_at)),
    ]
    return tuple(CustomMetadata(name, value) for name, value in fields if value)


def _piece_types(acte: ActeAcknowledged) -> dict[str, str]:
    """The CodeTypePJ of each document that has one, by the role of its DocumentRef."""
    types = {annexe.role: annexe.type_piece for annexe in acte.annexes}
    if acte.type_piece:
        types["acte"] = acte.type_piece
        types["acte_tamponne"] = acte.type_piece
    return types


def _iso(moment: date | datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _document_units(
    objects: Sequence[DepositedObject], piece_types: Mapping[str, str] | None = None
) -> tuple[ArchiveUnitDescription, ...]:
    piece_types = piece_types or {}
    return tuple(
        ArchiveUnitDescription(
            id=f"AU_DOC{position + 1}",
            title=f"{role_title(item.role)} : {item.filename}",
            level="Item",
            document_type=role_title(item.role),
            custom=tuple(
                CustomMetadata(name, value)
                for name, value in (("Role", item.role), ("TypePiece", piece_types.get(item.role)))
                if value
            ),
            object_ids=(object_id(position),),
        )
        for position, item in enumerate(objects)
    )


def _transfer(
    parties: Parties,
    objects: Sequence[DepositedObject],
    unit: ArchiveUnitDescription,
    appraisal: AppraisalRule,
    access: AccessRule,
    *,
    comment: str,
    archival_agreement: str,
) -> TransferDescription:
    return TransferDescription(
        message_identifier=parties.message_identifier,
        date=parties.date,
        comment=comment,
        archival_agreement=archival_agreement,
        archival_agency=parties.archival_agency,
        transferring_agency=parties.siren,
        originating_agency=parties.siren,
        submission_agency=parties.siren,
        objects=tuple(
            DataObject(
                id=object_id(position),
                uri=f"content/{object_id(position)}_{quote(item.filename)}",
                filename=item.filename,
                media_type=item.media_type,
                size=item.size,
                sha512=item.sha512,
            )
            for position, item in enumerate(objects)
        ),
        units=(unit,),
        appraisal=appraisal,
        access=access,
    )
